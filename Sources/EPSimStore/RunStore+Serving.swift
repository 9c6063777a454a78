import EPSim
import EventCore
import Foundation
import GRDB

/// The serving tables of schema version 5 (`epsim serve`): one `serve_runs` row per serving
/// run, and its steps, rank-steps and requests. Times are INTEGER picoseconds (`*_ps`) as in
/// version 4, with `*_us` views.
enum ServingSchema {
    static let tables = """
        CREATE TABLE serve_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            scenario_name TEXT NOT NULL,
            scenario_path TEXT NOT NULL,
            scenario_text TEXT NOT NULL,
            scenario_hash TEXT NOT NULL,
            seed INTEGER NOT NULL,
            policy TEXT NOT NULL,
            queueing TEXT NOT NULL,
            schedule TEXT NOT NULL,
            tool_version TEXT NOT NULL,
            ranks INTEGER NOT NULL,
            steps INTEGER NOT NULL,
            moe_layers INTEGER NOT NULL,
            simulated_moe_layers INTEGER NOT NULL,
            stopped INTEGER NOT NULL,
            wall_time_s REAL NOT NULL,
            summary_json TEXT NOT NULL
        );
        CREATE TABLE serve_steps (
            serve_id INTEGER NOT NULL REFERENCES serve_runs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            start_ps INTEGER NOT NULL,
            end_ps INTEGER NOT NULL,
            duration_ps INTEGER NOT NULL,
            balanced_ps INTEGER,
            requests INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            kv_tokens INTEGER NOT NULL,
            queued INTEGER NOT NULL,
            admitted INTEGER NOT NULL,
            finished INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            PRIMARY KEY (serve_id, step)
        ) WITHOUT ROWID;
        CREATE TABLE serve_rank_steps (
            serve_id INTEGER NOT NULL REFERENCES serve_runs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            rank INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            kv_tokens INTEGER NOT NULL,
            start_ps INTEGER NOT NULL,
            end_ps INTEGER NOT NULL,
            attention_ps INTEGER NOT NULL,
            dispatch_wait_ps INTEGER NOT NULL,
            combine_wait_ps INTEGER NOT NULL,
            PRIMARY KEY (serve_id, step, rank)
        ) WITHOUT ROWID;
        CREATE TABLE serve_requests (
            serve_id INTEGER NOT NULL REFERENCES serve_runs(id) ON DELETE CASCADE,
            request INTEGER NOT NULL,
            rank INTEGER NOT NULL,
            arrival_ps INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            generated INTEGER NOT NULL,
            rejected INTEGER NOT NULL,
            admitted_step INTEGER,
            decode_start_ps INTEGER,
            first_token_ps INTEGER,
            finish_ps INTEGER,
            tpot_ps INTEGER,
            PRIMARY KEY (serve_id, request)
        ) WITHOUT ROWID;
        CREATE VIEW serve_steps_us AS SELECT serve_id, step, start_ps / 1e6 AS start_us, end_ps / 1e6 AS end_us,
            duration_ps / 1e6 AS duration_us, balanced_ps / 1e6 AS balanced_us, requests, tokens, kv_tokens, queued, admitted,
            finished, output_tokens FROM serve_steps;
        CREATE VIEW serve_rank_steps_us AS SELECT serve_id, step, rank, requests, kv_tokens, start_ps / 1e6 AS start_us,
            end_ps / 1e6 AS end_us, attention_ps / 1e6 AS attention_us, dispatch_wait_ps / 1e6 AS dispatch_wait_us,
            combine_wait_ps / 1e6 AS combine_wait_us FROM serve_rank_steps;
        CREATE VIEW serve_requests_us AS SELECT serve_id, request, rank, arrival_ps / 1e6 AS arrival_us, input_tokens,
            output_tokens, generated, rejected, admitted_step, decode_start_ps / 1e6 AS decode_start_us,
            first_token_ps / 1e6 AS first_token_us, finish_ps / 1e6 AS finish_us, tpot_ps / 1e6 AS tpot_us FROM serve_requests;
        """
}

/// A stored serving run as listed (`serve_runs`).
public struct StoredServingRun: Sendable, Equatable {
    public var id: Int64
    public var scenarioName: String
    public var policy: String
    public var ranks: Int
    public var steps: Int
    public var summaryJSON: String
}

extension RunStore {
    /// Stores a serving run (its summary, every step, rank-step and request) in one
    /// transaction and returns its `serve_runs` id.
    @discardableResult
    public func saveServing(_ result: ServingResult, scenario: Scenario, source: RunSource, createdAt: Date = Date()) throws -> Int64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let summaryJSON = String(decoding: try encoder.encode(result.summary), as: UTF8.self)
        let created = ISO8601DateFormatter().string(from: createdAt)
        return try write { db in
            try db.execute(
                sql: """
                    INSERT INTO serve_runs (created_at, scenario_name, scenario_path, scenario_text, scenario_hash, seed, policy, queueing,
                        schedule, tool_version, ranks, steps, moe_layers, simulated_moe_layers, stopped, wall_time_s, summary_json)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    created, scenario.name, source.scenarioPath, source.scenarioText, scenario.contentHash,
                    Int64(bitPattern: result.config.seed), result.config.policy.name, result.config.queueing.rawValue, scenario.schedule.name,
                    Self.toolVersion, result.ranks, result.steps.count, result.moeLayers, result.simulatedMoELayers, result.stopped,
                    result.wallSeconds, summaryJSON,
                ])
            let id = db.lastInsertedRowID
            let step = try db.makeStatement(sql: "INSERT INTO serve_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for s in result.steps {
                step.setUncheckedArguments([
                    id, s.step, s.start.picos, s.end.picos, s.duration.picos, s.balanced?.picos, s.requests, s.tokens, s.kvTokens, s.queued,
                    s.admitted, s.finished, s.outputTokens,
                ])
                try step.execute()
            }
            let rank = try db.makeStatement(sql: "INSERT INTO serve_rank_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for r in result.rankSteps {
                rank.setUncheckedArguments([
                    id, r.step, r.rank, r.requests, r.kvTokens, r.start.picos, r.end.picos, r.attention.picos, r.dispatchWait.picos,
                    r.combineWait.picos,
                ])
                try rank.execute()
            }
            let request = try db.makeStatement(sql: "INSERT INTO serve_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for q in result.requests {
                request.setUncheckedArguments([
                    id, q.request.id, q.rank, q.request.arrival.picos, q.request.inputTokens, q.request.outputTokens, q.generated, q.rejected,
                    q.admittedStep, q.decodeStart?.picos, q.firstToken?.picos, q.finish?.picos, q.tpot?.picos,
                ])
                try request.execute()
            }
            return id
        }
    }

    /// The stored serving runs, oldest first (none in a database from before version 5).
    public func servingRuns() throws -> [StoredServingRun] {
        try read { db in
            guard try db.tableExists("serve_runs") else { return [] }
            return try Row.fetchAll(db, sql: "SELECT id, scenario_name, policy, ranks, steps, summary_json FROM serve_runs ORDER BY id").map {
                StoredServingRun(id: $0[0], scenarioName: $0[1], policy: $0[2], ranks: $0[3], steps: $0[4], summaryJSON: $0[5])
            }
        }
    }

    /// Rows of serving run `id` in `table` (`serve_steps`, `serve_rank_steps` or `serve_requests`).
    public func servingRowCount(_ table: String, serveID: Int64) throws -> Int {
        guard ["serve_steps", "serve_rank_steps", "serve_requests"].contains(table) else { return 0 }
        return try read { db in
            guard try db.tableExists(table) else { return 0 }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table) WHERE serve_id = ?", arguments: [serveID]) ?? 0
        }
    }
}
