import EventCore
import Testing

@testable import EPSim

/// A source that hands out given batches and records what the engine tells it.
final class RecordingSource: StepSource {
    let batches: [[Int]]
    var asked: [Int] = []
    var finished: [(rank: Int, step: Int, time: SimTime)] = []
    init(_ batches: [[Int]]) { self.batches = batches }
    func plan(step: Int, at time: SimTime) -> StepPlan {
        asked.append(step)
        return StepPlan(step: step, tokens: batches[step], kvLength: Array(repeating: 4096, count: batches[step].count))
    }
    func rankFinished(rank: RankID, step: Int, at time: SimTime) { finished.append((rank.index, step, time)) }
}

@Suite("Step sources")
struct StepSourceTests {
    static func scenario(tokens: [Int], steps: Int, schedule: String = "deepseek-decode") throws -> Scenario {
        var t = ScenarioText()
        t.ranks = 4
        t.gpusPerNode = 2
        t.tokens = tokens
        t.steps = steps
        t.schedule = schedule
        t.routing = "uniform"
        t.network = "ports"
        return try t.scenario()
    }

    @Test("a step from a source runs exactly as the same batch given in the scenario", arguments: ["none", "deepseek-decode", "deepseek-prefill"])
    func sourceMatchesScenario(schedule: String) throws {
        let batches = [[12, 0, 30, 7], [3, 19, 19, 1]]
        let source = RecordingSource(batches)
        let fromSource = try Simulation.run(try Self.scenario(tokens: [1, 1, 1, 1], steps: 2, schedule: schedule), source: source)
        // Step 0 from the source against a one-step scenario with that batch: the same
        // kernels (ranks start step 1 at different times, so only step 0 compares alone).
        let alone = try Simulation.run(try Self.scenario(tokens: batches[0], steps: 1, schedule: schedule))
        #expect(fromSource.kernels.filter { $0.step == 0 } == alone.kernels)
        #expect(!alone.kernels.isEmpty)
        #expect(fromSource.rankSteps.map { Int($0.tokens) } == batches.flatMap { $0 })
        #expect(source.asked == [0, 1], "each step's plan asked once")
        #expect(source.finished.count == 8, "every rank's end of every step reported once")
        for f in source.finished {
            let rs = fromSource.rankSteps.first { $0.rank == Int32(f.rank) && $0.step == Int32(f.step) }!
            #expect(rs.end == f.time)
        }
    }

    @Test("the static source reproduces the workload's draws, each rank once per step")
    func staticSource() throws {
        let w = Workload(tokensPerRank: [5, 9, 2], routing: .uniform, seed: 7, microBatchATokens: [1, 9, 5], tokenDistribution: .uniform(min: 0, max: 40))
        for step in 0..<4 {
            let plan = StaticWorkloadSource(workload: w).plan(step: step)
            #expect(plan.tokens == (0..<3).map { w.tokens(step: step, rank: $0) })
            for r in 0..<3 {
                let a = plan.tokenRange(rank: r, microBatch: .a, of: 2)
                let b = plan.tokenRange(rank: r, microBatch: .b, of: 2)
                #expect(a.count + b.count == plan.tokens[r] && a.upperBound == b.lowerBound, "micro-batches split the batch")
                #expect(plan.tokenRange(rank: r, microBatch: .a, of: 1) == 0..<plan.tokens[r])
            }
        }
    }

    @Test("a plan without one entry per rank, or with negative tokens, is refused with bad-plan")
    func badPlan() throws {
        let scenario = try Self.scenario(tokens: [1, 1, 1, 1], steps: 1)
        for batch in [[1, 2, 3], [1, -2, 3, 4]] {
            #expect {
                _ = try Simulation.run(scenario, source: RecordingSource([batch]))
            } throws: { ($0 as? SimulationError)?.code == .badPlan }
        }
    }
}
