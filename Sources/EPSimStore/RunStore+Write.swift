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
        summary.per_rank = []
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let summaryJSON = String(decoding: try encoder.encode(summary), as: UTF8.self)
        let created = ISO8601DateFormatter().string(from: createdAt)
        let latencies = result.rankSteps.map(\.latency)
        let run: [String: DatabaseValueConvertible?] = [
            "created_at": created, "scenario_name": scenario.name, "scenario_path": source.scenarioPath,
            "scenario_text": source.scenarioText, "scenario_hash": scenario.contentHash, "seed": Int64(bitPattern: scenario.workload.seed),
            "schedule": scenario.schedule.name, "tool_version": Self.toolVersion, "ranks": result.ranks, "steps": result.steps,
            "step_latency_ps": result.stepLatency.picos,
            "rank_latency_mean_ps": Schema.picos(micros: summary.rank_latency_mean_us) ?? (latencies.max() ?? .zero).picos,
            "rank_latency_min_ps": (latencies.min() ?? .zero).picos, "rank_latency_max_ps": (latencies.max() ?? .zero).picos,
            "slowest_rank": summary.slowest_rank, "kernel_count": result.kernelCount, "flow_count": result.flowCount,
            "message_count": result.messageCount, "wall_time_s": wallSeconds, "timeline": timeline.rawValue, "summary_json": summaryJSON,
        ]
        return try write { db in
            let columns = Schema.runColumns.map(\.name)
            try db.execute(
                sql: "INSERT INTO runs (\(columns.joined(separator: ", "))) VALUES (\(Schema.placeholders(columns.count)))",
                arguments: StatementArguments(columns.map { run[$0] ?? nil }))
            let runID = db.lastInsertedRowID
            if timeline != .none {
                let insert = try db.makeStatement(
                    sql:
                        "INSERT INTO rank_steps (run_id, \(Schema.names(Schema.rankStepColumns))) VALUES (?, ?, ?, \(Schema.placeholders(RankMetric.allCases.count)))"
                )
                for r in result.rankSteps {
                    insert.setUncheckedArguments(StatementArguments([runID, Int64(r.step), Int64(r.rank)] + RankMetric.allCases.map { $0.exact(r) }))
                    try insert.execute()
                }
            }
            if timeline == .full {
                // Values in the order of Schema.kernelColumns.
                let insert = try db.makeStatement(
                    sql: "INSERT INTO kernels (run_id, \(Schema.names(Schema.kernelColumns))) VALUES (?, \(Schema.placeholders(Schema.kernelColumns.count)))")
                for k in result.kernels {
                    insert.setUncheckedArguments([
                        runID, k.step, k.rank, k.layer, k.microBatch.description, k.kind.description, k.stream.description,
                        k.start.picos, k.end.picos, k.wait.picos, k.bytesOut, k.bytesIn, k.tokens,
                        k.blocker >= 0 ? k.blocker : nil, k.lastArrival?.picos, k.sendEnd?.picos,
                        k.blameReason == .none ? nil : k.blameReason.description, k.wait > .zero ? k.blockerLag.picos : nil,
                    ])
                    try insert.execute()
                }
            }
            try beforeCommit?()
            return runID
        }
    }
}
