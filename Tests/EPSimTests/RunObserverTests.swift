import EventCore
import Testing

@testable import EPSim

/// Collects everything an observer is handed.
final class Collector: RunObserver {
    var kernels: [KernelRecord] = []
    var flows: [FlowRecord] = []
    var rankSteps: [RankStepResult] = []
    func kernelEnded(_ kernel: KernelRecord) { kernels.append(kernel) }
    func flowDelivered(_ flow: FlowRecord) { flows.append(flow) }
    func rankStepEnded(_ result: RankStepResult) { rankSteps.append(result) }
}

@Suite("Streaming observers and run budgets")
struct RunObserverTests {
    static func scenario(seed: UInt64) throws -> Scenario { try RandomScenarios.make(seed).scenario() }

    static func key(_ k: KernelRecord) -> [Int64] { [Int64(k.rank), Int64(k.step), Int64(k.layer), Int64(k.microBatch.rawValue), Int64(k.kind.rawValue), k.start.picos] }

    @Test("an observer sees every kernel, flow and rank step the full run keeps, as each ends", arguments: [2, 7, 13, 21] as [UInt64])
    func streamsEverything(seed: UInt64) throws {
        let s = try Self.scenario(seed: seed)
        let full = try Simulation.run(s, options: .init(timeline: .full, recordFlows: true))
        let seen = Collector()
        let streamed = try Simulation.run(s, source: StaticWorkloadSource(workload: s.workload), observer: seen, options: .init(timeline: .summary, recordFlows: true))
        #expect(streamed.kernels.isEmpty, "a summary run keeps no kernel")
        #expect(streamed.rankSteps == full.rankSteps)
        #expect(seen.kernels.sorted { Self.key($0).lexicographicallyPrecedes(Self.key($1)) } == full.kernels.sorted { Self.key($0).lexicographicallyPrecedes(Self.key($1)) })
        #expect(zip(seen.kernels, seen.kernels.dropFirst()).allSatisfy { $0.end <= $1.end }, "kernels stream in the order they end")
        #expect(seen.flows == full.flows)
        #expect(seen.rankSteps.count == full.rankSteps.count)
        for rs in seen.rankSteps { #expect(full.rankSteps.contains(rs)) }
    }

    @Test("the memory estimate counts exactly what a run keeps")
    func estimateIsExact() throws {
        for seed in [3, 9] as [UInt64] {
            let s = try Self.scenario(seed: seed)
            let options = SimulationOptions(timeline: .full, recordFlows: true)
            let result = try Simulation.run(s, options: options)
            let e = Simulation.residentBytes(s, options: options)
            let kept = Double(result.kernels.count * MemoryLayout<KernelRecord>.stride)
            #expect(e.kernels == Int64(kept * (1 + 1 / Double(s.cluster.ranks))), "every kernel, and one rank's again while flattened")
            #expect(e.flows == Int64(result.flows.count * MemoryLayout<FlowRecord>.stride))
            #expect(e.rankSteps >= Int64(result.rankSteps.count * MemoryLayout<RankStepResult>.stride), "the figures, and their summary rows")
            #expect(e.process == ResidentEstimate.processBaseline && e.total > e.kernels + e.flows + e.rankSteps)
            #expect(Simulation.residentBytes(s, options: .init(timeline: .summary)).kernels == 0)
        }
    }

    @Test("a run over its memory budget is refused before it starts, with the part to drop")
    func memoryBudget() throws {
        let s = try Self.scenario(seed: 5)
        let e = Simulation.residentBytes(s, options: .init(timeline: .full))
        let tight = RunBudget(memoryBytes: e.total - e.kernels + 1)
        #expect {
            _ = try Simulation.run(s, options: .init(timeline: .full, budget: tight))
        } throws: { error in
            let e = error as? SimulationError
            return e?.code == .budgetExceeded && e!.message.contains("--timeline summary")
        }
        // The same budget holds the run when it keeps per-rank figures only.
        _ = try Simulation.run(s, options: .init(timeline: .summary, budget: tight))
    }

    @Test("thousands of EP 256 decode steps fit a summary run's budget, not a full one's")
    func largeRunsFitWhenStreamed() throws {
        let s = try Scenario.parse(
            yaml: """
                hardware: h800
                cluster: {ranks: 256, gpus_per_node: 8}
                model: {preset: deepseek-v3}
                workload: {tokens_per_rank: 128, routing: uniform}
                schedule: deepseek-decode
                steps: 5000
                """, file: "big.yaml")
        let summary = Simulation.residentBytes(s, options: .init(timeline: .summary))
        #expect(summary.total < RunBudget.standard.memoryBytes!)
        try Simulation.checkBudget(s, options: .init(timeline: .summary))
        #expect(throws: SimulationError.self) { try Simulation.checkBudget(s, options: .init(timeline: .full)) }
    }

    @Test("a run past its time budget stops with budget-exceeded")
    func timeBudget() throws {
        // Enough events to reach the first check (every 65,536 events).
        var t = ScenarioText()
        t.ranks = 16
        t.gpusPerNode = 8
        t.tokens = Array(repeating: 8, count: 16)
        t.moeLayers = 3
        t.steps = 400
        t.experts = 32
        t.schedule = "deepseek-decode"
        let s = try t.scenario()
        #expect {
            _ = try Simulation.run(s, options: .init(timeline: .summary, budget: RunBudget(wallSeconds: 1e-9)))
        } throws: { ($0 as? SimulationError)?.code == .budgetExceeded }
        let result = try Simulation.run(s, options: .init(timeline: .summary, budget: RunBudget(wallSeconds: 3600)))
        #expect(result.eventCount > 65_536, "the check was reached")
    }
}
