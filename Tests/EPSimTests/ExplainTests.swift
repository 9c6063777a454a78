import EventCore
import Foundation
import Testing

@testable import EPSim

@Suite("Blame and the critical path")
struct ExplainTests {
    static func twoRanks(_ extra: String, costs: String = "costs: {attn0_us: 30, attn1_us: 60, shared_us: 15, gemm_us: 50}") throws -> RunResult {
        let yaml = """
            cluster: {ranks: 2, gpus_per_node: 8}
            model: {experts: 16, top_k: 8}
            network: {model: ideal}
            \(costs)
            \(extra)
            """
        return try Simulation.run(try Scenario.parse(yaml: yaml, file: "two.yaml"))
    }

    @Test("attention imbalance: the fast rank waits in dispatch for the slow one, which started late; the path runs through its attention")
    func attentionImbalance() throws {
        let r = try Self.twoRanks("workload: {tokens_per_rank: 128}", costs: "costs: {attn0_us: 30, attn1_us: [60, 120], shared_us: 15, gemm_us: 50}")
        let d0 = r.kernels.first { $0.rank == 0 && $0.kind == .dispatch }!
        #expect(d0.blocker == 1 && d0.blameReason == .startedLate)
        #expect(d0.wait == .us(60) + r.kernels.first { $0.rank == 1 && $0.kind == .dispatch }!.wait)
        let path = try #require(CriticalPath(r))
        #expect(path.isContiguous && path.length == r.stepLatency)
        #expect(path.links.contains { $0.kind == .kernel && $0.rank == 1 && $0.kernel.kind == .attn1 })
        #expect(path.links.contains { $0.kind == .message && $0.fromRank == 1 && $0.rank == 0 && $0.kernel.kind == .dispatch })
        let accounts = RankAccount.accounts(r, step: 0)
        #expect(accounts[0].waitByRank[1] == .us(60), "rank 1 caused rank 0 exactly its extra attention")
    }

    @Test("batch imbalance: the light rank waits for the heavy one, which sent more; the step's path stays on the heavy rank")
    func batchImbalance() throws {
        let r = try Self.twoRanks("workload: {tokens_per_rank: [128, 32]}")
        let d1 = r.kernels.first { $0.rank == 1 && $0.kind == .dispatch }!
        #expect(d1.blocker == 0 && d1.blameReason == .sentMore)
        let path = try #require(CriticalPath(r))
        #expect(path.rank == 0 && path.isContiguous && path.length == r.stepLatency)
        #expect(path.links.allSatisfy { $0.rank == 0 && $0.fromRank == 0 })
        // Rank 0 sent 768 more messages at 0.02 us each: that much of rank 1's wait is rank 0's.
        let account = RankAccount.accounts(r, step: 0)[1]
        #expect(account.waitByRank[0]! > .us(768 * 0.02), "its longer SEND and its bigger message")
        #expect(account.waitByRank[0]! + account.waitByNetwork == account.totalWait)
    }

    @Test("a hot expert: its rank computes longer, so the other rank's combine waits for it")
    func hotExpert() throws {
        let r = try Self.twoRanks(
            "hardware: h800\nworkload: {tokens_per_rank: 256, routing: {kind: hot, experts: [0], factor: 200}, seed: 1}",
            // Without the warp-group limit, so that only the compute differs (the limit makes
            // rank 0's SEND longer too: see the next test).
            costs: "costs: {compute: roofline, attn0_us: 30, attn1_us: 60, shared_us: 15, combine_send: {pair_gbps: infinite}}")
        let mlp = { (rank: Int32) in r.kernels.first { $0.rank == rank && $0.kind == .mlp }! }
        #expect(mlp(0).duration > mlp(1).duration, "expert 0 lives on rank 0")
        let c1 = r.kernels.first { $0.rank == 1 && $0.kind == .combine }!
        #expect(c1.blocker == 0 && c1.blameReason == .startedLate)
        let path = try #require(CriticalPath(r))
        #expect(path.links.contains { $0.kind == .kernel && $0.rank == 0 && $0.kernel.kind == .mlp })
        #expect(path.length == r.stepLatency)
    }

    @Test("the critical path tiles the step exactly on random scenarios", arguments: Array(1...40) as [UInt64])
    func randomPaths(seed: UInt64) throws {
        var text = RandomScenarios.make(seed)
        if seed % 4 == 0 { text.schedule = "deepseek-prefill" }
        let r = try Simulation.run(try text.scenario())
        for step in 0..<r.steps {
            let path = try #require(CriticalPath(r, step: step))
            #expect(path.isContiguous, "seed \(seed) step \(step)")
            #expect(path.length == r.stepLatencies[step])
        }
    }

    @Test("a barrier never makes any rank finish earlier (ideal network)", arguments: Array(1...30) as [UInt64])
    func barriersNeverHelp(seed: UInt64) throws {
        var text = RandomScenarios.make(seed)
        text.schedule = "none"
        let plain = try Simulation.run(try text.scenario())
        var withBarriers = try text.scenario()
        try withBarriers.setSchedule(
            ScheduleSpec(
                name: "barriers", microBatches: 1,
                body: "ATTN0 ATTN1 SHARED BARRIER DISPATCH BARRIER MLP BARRIER COMBINE BARRIER".split(separator: " ").map {
                    try! KernelRef.parse(String($0)).get()
                }))
        let barred = try Simulation.run(withBarriers)
        for (a, b) in zip(plain.rankSteps, barred.rankSteps) {
            #expect(b.end >= a.end, "seed \(seed): rank \(a.rank) step \(a.step) finished earlier with barriers")
        }
        #expect(barred.kernels.contains { $0.kind == .barrier })
    }
}
