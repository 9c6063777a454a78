import EPSim
import EventCore
import Foundation
import GRDB

/// Where a run's scenario came from, kept with the run so that it can be re-run and diffed.
public struct RunSource: Sendable {
    public var scenarioPath: String
    public var scenarioText: String
    public init(scenarioPath: String, scenarioText: String) {
        self.scenarioPath = scenarioPath
        self.scenarioText = scenarioText
    }
}

extension RunStore {
    /// Stores one run in a single transaction and returns its id.
    ///
    /// `timeline` chooses what is kept: `none` the run row (with means over ranks),
    /// `summary` also one row per rank and step, `full` also one row per kernel (when the
    /// result holds them). Kernels go through one reused prepared statement.
    @discardableResult
    public func save(
        _ result: RunResult, scenario: Scenario, source: RunSource, wallSeconds: Double,
        timeline: TimelineDetail, createdAt: Date = Date()
    ) throws -> Int64 {
        try save(result, scenario: scenario, source: source, wallSeconds: wallSeconds, timeline: timeline, createdAt: createdAt, beforeCommit: nil)
    }

    /// `beforeCommit` runs inside the transaction after every row is written: tests make it
    /// throw to check that a failed run leaves nothing behind.
    func save(
        _ result: RunResult, scenario: Scenario, source: RunSource, wallSeconds: Double, timeline: TimelineDetail,
        createdAt: Date, beforeCommit: (() throws -> Void)?
    ) throws -> Int64 {
        var summary = RunSummary(result: result)
        let rows = summary.per_rank
        summary.per_rank = []
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let summaryJSON = String(decoding: try encoder.encode(summary), as: UTF8.self)
        let created = ISO8601DateFormatter().string(from: createdAt)
        return try write { db in
            try db.execute(
                sql: """
                    INSERT INTO runs (created_at, scenario_name, scenario_path, scenario_text, scenario_hash, seed, schedule,
                        tool_version, ranks, steps, step_latency_us, rank_latency_mean_us, rank_latency_min_us, rank_latency_max_us,
                        slowest_rank, kernel_count, flow_count, message_count, wall_time_s, timeline, summary_json)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    created, scenario.name, source.scenarioPath, source.scenarioText, scenario.contentHash,
                    Int64(bitPattern: scenario.workload.seed), scenario.schedule.name, Self.toolVersion, result.ranks, result.steps,
                    summary.step_latency_us, summary.rank_latency_mean_us, summary.rank_latency_min_us, summary.rank_latency_max_us,
                    summary.slowest_rank, result.kernelCount, result.flowCount, result.messageCount, wallSeconds,
                    timeline.rawValue, summaryJSON,
                ])
            let runID = db.lastInsertedRowID
            if timeline != .none {
                let metrics = Self.rankStepMetrics
                let insert = try db.makeStatement(
                    sql:
                        "INSERT INTO rank_steps (run_id, step, rank, \(metrics.map(\.storedName).joined(separator: ", "))) VALUES (?, ?, ?\(String(repeating: ", ?", count: metrics.count)))"
                )
                for r in rows {
                    insert.setUncheckedArguments(
                        StatementArguments([runID, r.step, r.rank] + metrics.map { m -> DatabaseValueConvertible in m.unit == .count ? r.tokens : r[m] }))
                    try insert.execute()
                }
            }
            if timeline == .full {
                let insert = try db.makeStatement(
                    sql: """
                        INSERT INTO kernels (run_id, step, rank, layer, micro_batch, kind, stream, start_us, end_us, wait_us,
                            bytes_out, bytes_in, tokens, blocker_rank, last_arrival_us, send_end_us, blame, blocker_lag_us)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """)
                for k in result.kernels {
                    insert.setUncheckedArguments([
                        runID, k.step, k.rank, k.layer, k.microBatch.description, k.kind.description, k.stream.description,
                        k.start.micros, k.end.micros, k.wait.micros, k.bytesOut, k.bytesIn, k.tokens,
                        k.blocker >= 0 ? k.blocker : nil, k.lastArrival?.micros, k.sendEnd?.micros,
                        k.blameReason == .none ? nil : k.blameReason.description, k.wait > .zero ? k.blockerLag.micros : nil,
                    ])
                    try insert.execute()
                }
            }
            try beforeCommit?()
            return runID
        }
    }
}

extension Scenario {
    /// A hash of the resolved scenario (every default filled in, name and description left
    /// out): two files that differ only in comments, key order, spelling of numbers or
    /// defaults written out hash the same. FNV-1a, 64 bits, as 16 hex digits.
    public var contentHash: String {
        var canonical = self
        canonical.name = ""
        canonical.description = ""
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in String(reflecting: canonical).utf8 {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
