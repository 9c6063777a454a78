import EPSim
import EventCore
import Foundation
import GRDB

/// One line of `epsim runs list`.
public struct RunListing: Sendable, Equatable {
    public var id: Int64
    public var createdAt: String
    public var scenarioName: String
    public var schedule: String
    public var ranks: Int
    public var steps: Int
    /// Maximum over steps of the step latency, exact.
    public var stepLatency: SimTime
    public var timeline: String

    /// ``stepLatency`` in microseconds.
    public var stepLatencyMicros: Double { stepLatency.micros }
}

/// A stored run as read back.
public struct StoredRun: Sendable {
    public var listing: RunListing
    public var scenarioPath: String
    public var scenarioText: String
    public var scenarioHash: String
    public var seed: UInt64
    public var toolVersion: String
    public var wallSeconds: Double
    /// The run's figures; `per_rank` is filled when the run kept per-rank rows.
    public var summary: RunSummary
    /// The per-rank results exactly as the run computed them (empty when the run kept no
    /// per-rank rows), ordered by step, then rank.
    public var rankSteps: [RankStepResult]
    public var storedKernels: Int
}

extension RunStore {
    /// Runs, newest first, optionally only those of one scenario.
    public func list(scenario: String? = nil, limit: Int? = nil) throws -> [RunListing] {
        try read { db in
            var sql = "SELECT id, created_at, scenario_name, schedule, ranks, steps, step_latency_ps, timeline FROM runs"
            var arguments: StatementArguments = []
            if let scenario {
                sql += " WHERE scenario_name = ?"
                arguments += [scenario]
            }
            sql += " ORDER BY id DESC"
            if let limit {
                sql += " LIMIT ?"
                arguments += [limit]
            }
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.listing)
        }
    }

    static func listing(_ row: Row) throws -> RunListing {
        RunListing(
            id: try row.decode(forColumn: "id"), createdAt: try row.decode(forColumn: "created_at"),
            scenarioName: try row.decode(forColumn: "scenario_name"), schedule: try row.decode(forColumn: "schedule"),
            ranks: try row.decode(forColumn: "ranks"), steps: try row.decode(forColumn: "steps"),
            stepLatency: SimTime(picos: try row.decode(forColumn: "step_latency_ps")), timeline: try row.decode(forColumn: "timeline"))
    }

    /// The run with `id`.
    /// - Throws: ``StoreError`` with code `unknownRun` when there is none.
    public func run(_ id: Int64) throws -> StoredRun {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [id]) else {
                throw StoreError(.unknownRun, path: path, message: "has no run \(id); `epsim runs list` shows the stored runs")
            }
            var summary = try JSONDecoder().decode(RunSummary.self, from: Data((try row.decode(String.self, forColumn: "summary_json")).utf8))
            let rankSteps = try Row.fetchAll(db, sql: "SELECT * FROM rank_steps WHERE run_id = ? ORDER BY step, rank", arguments: [id]).map { row in
                var r = RankStepResult(rank: try row.decode(forColumn: "rank"), step: try row.decode(forColumn: "step"))
                for m in RankMetric.allCases where !m.isDerived {
                    guard m.assign(try row.decode(Int64.self, forColumn: m.column), to: &r) else {
                        throw StoreError(.badValue, path: path, message: "run \(id) has \(m.column) out of range; the database was edited or damaged")
                    }
                }
                return r
            }
            summary.per_rank = rankSteps.map(RunSummary.RankRow.init)
            let kernels = try Int.fetchOne(db, sql: "SELECT count(*) FROM kernels WHERE run_id = ?", arguments: [id]) ?? 0
            return StoredRun(
                listing: try Self.listing(row), scenarioPath: try row.decode(forColumn: "scenario_path"),
                scenarioText: try row.decode(forColumn: "scenario_text"), scenarioHash: try row.decode(forColumn: "scenario_hash"),
                seed: UInt64(bitPattern: try row.decode(forColumn: "seed")), toolVersion: try row.decode(forColumn: "tool_version"),
                wallSeconds: try row.decode(forColumn: "wall_time_s"), summary: summary, rankSteps: rankSteps, storedKernels: kernels)
        }
    }

    /// The stored kernels of run `id`, in the order the run produced them (by rank, then time).
    public func kernels(_ id: Int64, rank: Int? = nil) throws -> [KernelRecord] {
        _ = try run(id)
        return try read { db in
            var sql = "SELECT * FROM kernels WHERE run_id = ?"
            var arguments: StatementArguments = [id]
            if let rank {
                sql += " AND rank = ?"
                arguments += [rank]
            }
            sql += " ORDER BY rowid"
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                func time(_ column: String) throws -> SimTime { SimTime(picos: try row.decode(forColumn: column)) }
                func optionalTime(_ column: String) throws -> SimTime? { (try row.decode(Int64?.self, forColumn: column)).map(SimTime.init(picos:)) }
                let kindName: String = try row.decode(forColumn: "kind")
                guard let kind = KernelKind(name: kindName) else {
                    throw StoreError(.badValue, path: path, message: "run \(id) has a kernel of unknown kind '\(kindName)'; the database was edited or damaged")
                }
                return KernelRecord(
                    rank: try row.decode(forColumn: "rank"), step: try row.decode(forColumn: "step"), layer: try row.decode(forColumn: "layer"),
                    microBatch: (try row.decode(String.self, forColumn: "micro_batch")) == "B" ? .b : .a, kind: kind,
                    stream: (try row.decode(String.self, forColumn: "stream")) == "comm" ? .comm : .compute,
                    start: try time("start_ps"), end: try time("end_ps"), wait: try time("wait_ps"),
                    bytesOut: try row.decode(forColumn: "bytes_out"), bytesIn: try row.decode(forColumn: "bytes_in"),
                    tokens: try row.decode(forColumn: "tokens"), blocker: (try row.decode(Int32?.self, forColumn: "blocker_rank")) ?? -1,
                    lastArrival: try optionalTime("last_arrival_ps"), sendEnd: try optionalTime("send_end_ps"),
                    blameReason: (try row.decode(String?.self, forColumn: "blame")).flatMap(BlameReason.init(name:)) ?? .none,
                    blockerLag: try optionalTime("blocker_lag_ps") ?? .zero)
            }
        }
    }

    /// Deletes run `id` with its rows.
    public func delete(_ id: Int64) throws {
        _ = try run(id)
        try write { db in
            try db.execute(sql: "DELETE FROM kernels WHERE run_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM rank_steps WHERE run_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM runs WHERE id = ?", arguments: [id])
        }
    }
}

extension StoredRun {
    /// The run as a ``RunResult`` again (per-rank figures from the stored rows, exact; `kernels`
    /// as read with ``RunStore/kernels(_:rank:)``), for analyses that take a result.
    public func result(kernels: [KernelRecord]) -> RunResult {
        return RunResult(
            scenarioName: listing.scenarioName, schedule: listing.schedule, ranks: listing.ranks, steps: listing.steps, rankSteps: rankSteps,
            kernels: kernels, flows: [], kernelCount: summary.kernels, flowCount: summary.flows, messageCount: summary.messages,
            eventCount: 0, blockedWait: summary.blocked_wait_us.map { SimTime(picos: Schema.picos(micros: $0) ?? 0) })
    }
}
