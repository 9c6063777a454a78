import EventCore
import Foundation
import Testing

@testable import EPSim

@Suite("Per-rank metrics, defined once")
struct RankMetricTests {
    /// A run with barriers and launch gaps, so that every figure is non-zero somewhere.
    static func result() throws -> RunResult {
        let yaml = """
            cluster: {ranks: 2, gpus_per_node: 1}
            model: {experts: 16, top_k: 4, moe_layers: 2, dense_layers: 1}
            workload: {tokens_per_rank: [96, 24], routing: uniform, seed: 5}
            steps: 2
            schedule:
              name: barriers
              body: ATTN0 ATTN1 SHARED BARRIER DISPATCH BARRIER MLP BARRIER COMBINE
            costs: {attn0_us: 30, attn1_us: [60, 90], shared_us: 15, gemm_us: 50, dense_mlp_us: 20, launch_gap_us: 1.5}
            """
        return try Simulation.run(Scenario.parse(yaml: yaml, file: "metrics.yaml"))
    }

    /// What a row showed before the metrics were one list (and the two figures added then),
    /// written out field by field: the independent truth for the table.
    static func expected(_ r: RankStepResult) -> [String: Double] {
        [
            "rank": Double(r.rank), "step": Double(r.step), "tokens": Double(r.tokens), "start_us": r.start.micros,
            "end_us": r.end.micros, "e2e_us": r.latency.micros, "busy_us": r.busy.micros, "attention_us": r.attention.micros,
            "shared_us": r.shared.micros, "dense_us": r.dense.micros, "dispatch_us": r.dispatch.micros,
            "dispatch_wait_us": r.dispatchWait.micros, "gemm_us": r.gemm.micros, "combine_us": r.combine.micros,
            "combine_wait_us": r.combineWait.micros, "exposed_comm_us": r.exposedCommunication.micros,
            "barrier_us": r.barrier.micros, "launch_gaps_us": r.launchGaps.micros,
        ]
    }

    @Test("a row's JSON holds exactly the documented figures, each equal to the engine's")
    func rowJSON() throws {
        let result = try Self.result()
        #expect(result.rankSteps.contains { $0.barrier > .zero && $0.launchGaps > .zero && $0.dense > .zero })
        for r in result.rankSteps {
            let data = try JSONEncoder().encode(RunSummary.RankRow(r))
            let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Double])
            #expect(json == Self.expected(r))
        }
    }

    @Test("names are unique, times are _us when shown and _ps when stored, and every figure is read exactly")
    func names() throws {
        #expect(Set(RankMetric.allCases.map(\.name)).count == RankMetric.allCases.count)
        #expect(Set(RankMetric.allCases.map(\.column)).count == RankMetric.allCases.count)
        for m in RankMetric.allCases where m.unit == .time {
            #expect(m.name.hasSuffix("_us") && m.column.hasSuffix("_ps") && m.name.dropLast(3) == m.column.dropLast(3))
        }
        // The table's columns: the common ones always, dense, barrier and launch gaps only
        // when some rank has them.
        let common = [
            "tokens", "e2e_us", "attention_us", "shared_us", "dispatch_us", "dispatch_wait_us", "gemm_us", "combine_us",
            "combine_wait_us", "exposed_comm_us",
        ]
        #expect(RankMetric.shown(in: .table, for: { _ in [0, 0] }).map(\.name) == common)
        #expect(
            RankMetric.shown(in: .table, for: { $0 == .barrier ? [0, 2] : [0] }).map(\.name)
                == common + ["barrier_us"])
        #expect(Set(RankMetric.shown(in: .table).map(\.name)) == Set(common + ["dense_us", "barrier_us", "launch_gaps_us"]))
        // Assigning every stored figure's exact value rebuilds the result, derived ones included.
        for r in try Self.result().rankSteps {
            var back = RankStepResult(rank: r.rank, step: r.step)
            for m in RankMetric.allCases { #expect(m.assign(m.exact(r), to: &back)) }
            #expect(back == r)
            #expect(RankMetric.e2e.exact(back) == r.latency.picos && RankMetric.exposedComm.exact(back) == r.exposedCommunication.picos)
        }
    }

    @Test("a summary survives JSON; one written before barrier and launch gaps were shown reads them as 0")
    func summaryJSON() throws {
        let summary = RunSummary(result: try Self.result())
        let data = try JSONEncoder().encode(summary)
        #expect(try JSONDecoder().decode(RunSummary.self, from: data) == summary)
        #expect(summary.rank_mean[.barrier] > 0)

        var old = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var means = try #require(old["rank_mean"] as? [String: Any])
        means["barrier_us"] = nil
        means["launch_gaps_us"] = nil
        old["rank_mean"] = means
        let back = try JSONDecoder().decode(RunSummary.self, from: JSONSerialization.data(withJSONObject: old))
        #expect(back.rank_mean[.barrier] == 0 && back.rank_mean[.launchGaps] == 0)
        #expect(back.rank_mean[.dispatchWait] == summary.rank_mean[.dispatchWait])
    }
}
