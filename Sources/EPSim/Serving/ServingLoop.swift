import EventCore
import Foundation

/// One rank in one decode step of a serving run (times are simulated time; in the fast path
/// extrapolated to every MoE layer, ``ServingLoop``).
public struct ServingRankStep: Sendable, Equatable {
    public var step: Int
    public var rank: Int
    public var requests: Int
    /// KV-cache tokens of the rank's requests when the step began.
    public var kvTokens: Int
    public var start: SimTime
    public var end: SimTime
    /// `ATTN0 + ATTN1` over the step's layers.
    public var attention: SimTime
    /// Time the rank's dispatch and combine RECVs spent waiting for arrivals.
    public var dispatchWait: SimTime
    public var combineWait: SimTime
}

/// One decode step of a serving run, over all ranks.
public struct ServingStep: Sendable, Equatable {
    public var step: Int
    /// The first rank's start (when admission happened) and the last rank's end.
    public var start: SimTime
    public var end: SimTime
    /// What the step added to the run: the last end minus the previous step's last end (or,
    /// after an idle gap, minus this step's first start).
    public var duration: SimTime
    /// The balanced counterfactual's step time (the same requests spread evenly, every rank
    /// starting together); nil when not simulated.
    public var balanced: SimTime?
    public var requests: Int
    public var tokens: Int
    public var kvTokens: Int
    /// Requests waiting when the step was planned (after admission); with `requests`, those
    /// in the system then.
    public var queued: Int
    public var admitted: Int
    public var finished: Int
    /// Output tokens the step's requests gained (accepted tokens with multi-token prediction).
    public var outputTokens: Int
}

/// Drives a serving run: each decode step, admits requests (``ServingScheduler``), builds
/// the step's plan (every rank's active requests, their KV lengths), simulates the step
/// with the engine (arrival-gated dispatch and combine, every rank starting where its own
/// previous step ended), and hands each rank's end back to the scheduler.
///
/// **Fast path** (``ServingConfig/simulatedMoELayers`` = `k` < the model's `L`): the step
/// simulates the dense layers and the first `k` MoE layers (`k >= 3`), and every per-rank
/// figure is extrapolated from the steady layers `1 ..< k-1` (layer 0 absorbs the ranks'
/// start skew, layer `k-1` ends the pipeline, as the full step's last layer does):
/// `end(L) = end(k) + (L - k) x (E(k-2) - E(0)) / (k - 2)`, where `E(j)` is the rank's
/// last kernel end in MoE layer `j`, and likewise each per-layer sum (attention, waits).
/// Its error against every layer simulated is measured in docs/model.md.
///
/// **Steps one at a time**: each step is its own simulation whose ranks start at their ends
/// of the step before (plus the host's `step_gap_us`), so a flow of one step never shares a
/// port with the next step's flows. On the `ideal` network that equals one multi-step run.
public struct ServingLoop: Sendable {
    public let scenario: Scenario
    public let config: ServingConfig
    /// The scenario each step simulates: one step of `k` MoE layers.
    let stepScenario: Scenario
    let simulatedLayers: Int
    let modelLayers: Int

    /// - Throws: ``ScenarioError`` when the scenario has no `serving` section.
    public init(scenario: Scenario) throws {
        guard let config = scenario.serving else {
            throw ScenarioError(.missingKey, file: scenario.name, keyPath: "serving", message: "missing; epsim serve needs a serving section")
        }
        self.scenario = scenario
        self.config = config
        modelLayers = scenario.model.moeLayers
        simulatedLayers = min(config.simulatedMoELayers ?? modelLayers, modelLayers)
        var s = scenario
        s.steps = 1
        s.model.moeLayers = simulatedLayers
        stepScenario = s
    }

    /// What a step's simulation gave for each rank, extrapolated to every MoE layer.
    struct RankFigures: Sendable {
        var start: SimTime
        var end: SimTime
        var attention: SimTime
        var dispatchWait: SimTime
        var combineWait: SimTime
    }

    /// Per (rank, MoE layer): the last kernel end and the layer's attention and waits.
    final class LayerMarks: RunObserver {
        let layers: Int
        let dense: Int
        var end: [SimTime]
        var attention: [SimTime]
        var dispatchWait: [SimTime]
        var combineWait: [SimTime]

        init(ranks: Int, layers: Int, dense: Int) {
            self.layers = layers
            self.dense = dense
            end = Array(repeating: .zero, count: ranks * layers)
            attention = end
            dispatchWait = end
            combineWait = end
        }

        func kernelEnded(_ k: KernelRecord) {
            let j = Int(k.layer) - dense
            guard j >= 0 && j < layers else { return }
            let i = Int(k.rank) * layers + j
            end[i] = max(end[i], k.end)
            switch k.kind {
            case .attn0, .attn1: attention[i] += k.duration
            case .sendDispatch, .recvDispatch, .dispatch: dispatchWait[i] += k.wait
            case .sendCombine, .recvCombine, .combine: combineWait[i] += k.wait
            default: break
            }
        }
    }

    /// A step source that hands out one prepared plan.
    struct OnePlan: StepSource {
        let plan: StepPlan
        func plan(step: Int, at time: SimTime) -> StepPlan { plan }
        func rankFinished(rank: RankID, step: Int, at time: SimTime) {}
    }

    /// The step's and its counterfactual's simulations, filled in from two threads.
    final class StepOutcome: @unchecked Sendable {
        let lock = NSLock()
        var results: [Int: Result<[RankFigures], any Error>] = [:]
    }

    /// Simulates one step of `plan` with ranks starting at `starts`, extrapolated to every
    /// MoE layer.
    func simulate(_ plan: StepPlan, starts: [SimTime], step: Int) throws -> [RankFigures] {
        var s = stepScenario
        // The host's draws (jitter) differ from step to step as in a multi-step run.
        if s.host != nil { s.host!.seed = SplitMix64.mix(scenario.workload.seed, 0x484F, UInt64(step)) }
        let k = simulatedLayers
        let marks = LayerMarks(ranks: s.cluster.ranks, layers: k, dense: s.model.denseLayers)
        let result = try Simulation.run(s, source: OnePlan(plan: plan), observer: marks, options: SimulationOptions(timeline: .summary), startTimes: starts)
        let extra = Int64(modelLayers - k)
        return result.rankSteps.map { rs in
            let r = Int(rs.rank)
            var f = RankFigures(start: rs.start, end: rs.end, attention: rs.attention, dispatchWait: rs.dispatchWait, combineWait: rs.combineWait)
            guard extra > 0, k >= 3 else { return f }
            // Steady layers: 1 ..< k-1. Layer 0 absorbs the ranks' start skew; the last one
            // ends the pipeline (the schedule's epilogue), which the full step has once too.
            let base = r * k
            let steadyLayers = Int64(k - 2)
            func steady(_ x: [SimTime]) -> SimTime {
                var sum = SimTime.zero
                for j in 1..<(k - 1) { sum += x[base + j] }
                return SimTime(picos: sum.picos / steadyLayers).times(extra)
            }
            f.end += SimTime(picos: (marks.end[base + k - 2] - marks.end[base]).picos / steadyLayers).times(extra)
            f.attention += steady(marks.attention)
            f.dispatchWait += steady(marks.dispatchWait)
            f.combineWait += steady(marks.combineWait)
            return f
        }
    }

    /// Runs every step (or until every request has finished and none will come, or
    /// `shouldStop` says so before a step), telling `progress` after each step.
    ///
    /// - Throws: ``SimulationError`` from a step's simulation (its step named).
    public func run(
        progress: ((_ stepsDone: Int, _ steps: Int) -> Void)? = nil, shouldStop: (() -> Bool)? = nil
    ) throws -> ServingResult {
        let clock = ContinuousClock.now
        let n = scenario.cluster.ranks
        let query = (0..<n).map { 1 + (scenario.workload.draftTokens?[$0] ?? 0) }
        var scheduler = ServingScheduler(config: config, ranks: n, queryTokens: query, acceptanceRate: scenario.workload.acceptanceRate)
        var starts = Array(repeating: SimTime.zero, count: n)
        var frontier = SimTime.zero
        var steps: [ServingStep] = []
        var rankSteps: [ServingRankStep] = []
        steps.reserveCapacity(min(config.steps, 1 << 20))
        var stopped = false
        var drained = false
        let gap = scenario.host?.stepGap ?? Array(repeating: .zero, count: n)
        for step in 0..<config.steps {
            if shouldStop?() == true {
                stopped = true
                break
            }
            var planTime = starts.min() ?? .zero
            guard scheduler.arrive(until: planTime) else {
                throw SimulationError(
                    code: .budgetExceeded,
                    message:
                        "serving step \(step): \(ServingScheduler.maxWaiting) requests wait (or were rejected, larger than serving.kv_capacity_tokens) at \(planTime): the arrivals outrun what \(n) ranks of \(config.maxRequestsPerRank) requests serve; lower serving.arrivals, or set serving.requests")
            }
            var admitted = scheduler.admit(step: step, rankStarts: starts)
            while scheduler.activeRequests == 0 {
                // Nothing to decode: the ranks idle until the next arrival.
                guard let next = scheduler.nextArrival else { break }
                planTime = max(planTime, next)
                for r in 0..<n { starts[r] = max(starts[r], planTime) }
                scheduler.arrive(until: planTime)
                admitted += scheduler.admit(step: step, rankStarts: starts)
            }
            if scheduler.activeRequests == 0 {
                drained = true
                break
            }
            let plan = scheduler.plan(step: step)
            let balancedPlan = config.counterfactual ? scheduler.balancedPlan(step: step) : nil
            // The step and its balanced counterfactual are independent: run them side by side.
            let outcome = StepOutcome()
            let startsNow = starts
            let loop = self
            DispatchQueue.concurrentPerform(iterations: balancedPlan == nil ? 1 : 2) { i in
                let f = Result { try loop.simulate(i == 0 ? plan : balancedPlan!, starts: i == 0 ? startsNow : Array(repeating: .zero, count: n), step: step) }
                outcome.lock.withLock { outcome.results[i] = f }
            }
            let figures: [RankFigures]
            var balanced: [RankFigures]?
            do {
                figures = try outcome.results[0]!.get()
                balanced = try outcome.results[1]?.get()
            } catch let failure {
                if var e = failure as? SimulationError {
                    e.message = "serving step \(step): " + e.message
                    throw e
                }
                throw failure
            }
            let ends = figures.map(\.end)
            for r in 0..<n {
                rankSteps.append(
                    ServingRankStep(
                        step: step, rank: r, requests: plan.requests(rank: r, tokens: plan.tokens[r]), kvTokens: scheduler.kvTokens(rank: r),
                        start: figures[r].start, end: figures[r].end, attention: figures[r].attention, dispatchWait: figures[r].dispatchWait,
                        combineWait: figures[r].combineWait))
            }
            let last = ends.max() ?? planTime
            let record = ServingStep(
                step: step, start: planTime, end: last, duration: last - max(frontier, planTime),
                balanced: balanced.map { $0.map(\.end).max() ?? .zero }, requests: scheduler.activeRequests, tokens: plan.tokens.reduce(0, +),
                kvTokens: (0..<n).reduce(0) { $0 + scheduler.kvTokens(rank: $1) }, queued: scheduler.queuedRequests, admitted: admitted, finished: 0, outputTokens: 0)
            steps.append(record)
            (steps[steps.count - 1].finished, steps[steps.count - 1].outputTokens) = scheduler.complete(step: step, ends: ends)
            frontier = last
            for r in 0..<n { starts[r] = ends[r] + gap[r] }
            progress?(step + 1, config.steps)
        }
        return ServingResult(
            scenarioName: scenario.name, config: config, ranks: n, moeLayers: modelLayers, simulatedMoELayers: simulatedLayers,
            steps: steps, rankSteps: rankSteps, requests: scheduler.records, interTokenGaps: scheduler.interTokenGaps,
            stopped: stopped, drained: drained, wallSeconds: (ContinuousClock.now - clock).secondsValue)
    }
}

extension Duration {
    /// The duration in seconds.
    var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
