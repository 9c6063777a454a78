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
    public var stepLatencyMicros: Double
    public var timeline: String
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
    public var storedKernels: Int
}

extension RunStore {
    /// Runs, newest first, optionally only those of one scenario.
    public func list(scenario: String? = nil, limit: Int? = nil) throws -> [RunListing] {
        try read { db in
            var sql = "SELECT id, created_at, scenario_name, schedule, ranks, steps, step_latency_us, timeline FROM runs"
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

    static func listing(_ row: Row) -> RunListing {
        RunListing(
            id: row["id"], createdAt: row["created_at"], scenarioName: row["scenario_name"], schedule: row["schedule"],
            ranks: row["ranks"], steps: row["steps"], stepLatencyMicros: row["step_latency_us"], timeline: row["timeline"])
    }

    /// The run with `id`.
    /// - Throws: ``StoreError`` with code `unknownRun` when there is none.
    public func run(_ id: Int64) throws -> StoredRun {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [id]) else {
                throw StoreError(.unknownRun, path: path, message: "has no run \(id); `epsim runs list` shows the stored runs")
            }
            var summary = try JSONDecoder().decode(RunSummary.self, from: Data((row["summary_json"] as String).utf8))
            summary.per_rank = try Row.fetchAll(db, sql: "SELECT * FROM rank_steps WHERE run_id = ? ORDER BY step, rank", arguments: [id]).map { row in
                var r = RunSummary.RankRow(RankStepResult(rank: row["rank"], step: row["step"]))
                for m in Self.rankStepMetrics { r[m] = row[m.storedName] }
                return r
            }
            let kernels = try Int.fetchOne(db, sql: "SELECT count(*) FROM kernels WHERE run_id = ?", arguments: [id]) ?? 0
            return StoredRun(
                listing: Self.listing(row), scenarioPath: row["scenario_path"], scenarioText: row["scenario_text"],
                scenarioHash: row["scenario_hash"], seed: UInt64(bitPattern: row["seed"]), toolVersion: row["tool_version"],
                wallSeconds: row["wall_time_s"], summary: summary, storedKernels: kernels)
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
                KernelRecord(
                    rank: row["rank"], step: row["step"], layer: row["layer"],
                    microBatch: (row["micro_batch"] as String) == "B" ? .b : .a,
                    kind: KernelKind(name: row["kind"]) ?? .attn0,
                    stream: (row["stream"] as String) == "comm" ? .comm : .compute,
                    start: SimTime(micros: row["start_us"]), end: SimTime(micros: row["end_us"]), wait: SimTime(micros: row["wait_us"]),
                    bytesOut: row["bytes_out"], bytesIn: row["bytes_in"], tokens: row["tokens"],
                    blocker: (row["blocker_rank"] as Int32?) ?? -1,
                    lastArrival: (row["last_arrival_us"] as Double?).map { SimTime(micros: $0) },
                    sendEnd: (row["send_end_us"] as Double?).map { SimTime(micros: $0) },
                    blameReason: (row["blame"] as String?).flatMap(BlameReason.init(name:)) ?? .none,
                    blockerLag: (row["blocker_lag_us"] as Double?).map { SimTime(micros: $0) } ?? .zero)
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
    /// The run as a ``RunResult`` again (per-rank figures from the stored rows, `kernels` as
    /// read with ``RunStore/kernels(_:rank:)``), for analyses that take a result.
    public func result(kernels: [KernelRecord]) -> RunResult {
        let rows = summary.per_rank.map { r -> RankStepResult in
            var s = RankStepResult(rank: Int32(r.rank), step: Int32(r.step))
            for m in RunStore.rankStepMetrics { m.assign(m.unit == .count ? Int64(r.tokens) : SimTime(micros: r[m]).picos, to: &s) }
            s.computeOnComputeStream = s.end - s.start - SimTime(micros: r[.exposedComm])
            return s
        }
        return RunResult(
            scenarioName: listing.scenarioName, schedule: listing.schedule, ranks: listing.ranks, steps: listing.steps, rankSteps: rows,
            kernels: kernels, flows: [], kernelCount: summary.kernels, flowCount: summary.flows, messageCount: summary.messages,
            eventCount: 0, blockedWait: summary.blocked_wait_us.map { SimTime(micros: $0) })
    }
}
