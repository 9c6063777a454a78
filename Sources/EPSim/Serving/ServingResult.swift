import EventCore

/// Everything a serving run computed: per step, per rank and step, per request, and the
/// inter-token gaps; ``summary`` gives the figures a user reads.
public struct ServingResult: Sendable {
    public var scenarioName: String
    public var config: ServingConfig
    public var ranks: Int
    /// The model's MoE layers, and those each step simulated (the rest extrapolated).
    public var moeLayers: Int
    public var simulatedMoELayers: Int
    public var steps: [ServingStep]
    /// `rankSteps[step * ranks + rank]`.
    public var rankSteps: [ServingRankStep]
    public var requests: [ServingRequestRecord]
    /// Every inter-token gap of the counted steps, with the requests that saw it.
    public var interTokenGaps: [(gap: SimTime, requests: Int)]
    /// `shouldStop` ended the run before its steps (Ctrl-C): the steps so far are complete.
    public var stopped: Bool
    /// Every request finished and none will come: the run ended before its steps.
    public var drained: Bool
    public var wallSeconds: Double

    public var summary: ServingSummary { ServingSummary(self) }
}

/// A serving run's figures (times in microseconds, as `_us` keys in JSON).
///
/// Counted from step ``ServingConfig/warmupSteps``: throughput and step times over the
/// counted steps; per-request latencies over requests admitted in them that finished. A
/// figure over an empty set (no counted step: the run ended or was stopped during warm-up;
/// no request finished) is nil, `null` in JSON, never 0.
public struct ServingSummary: Sendable, Equatable, Codable {
    public var scenario: String
    public var policy: String
    public var queueing: String
    public var ranks: Int
    public var steps: Int
    public var countedSteps: Int
    public var moeLayers: Int
    public var simulatedMoELayers: Int
    public var requestsArrived: Int
    public var requestsFinished: Int
    public var requestsRejected: Int
    /// Output tokens generated in the counted steps (accepted tokens with multi-token prediction).
    public var outputTokens: Int
    /// Output tokens per second per GPU over the counted steps' span (idle time included).
    public var tokensPerSecondPerGPU: Double?
    public var tpotP50Micros: Double?
    public var tpotP90Micros: Double?
    public var tpotP99Micros: Double?
    /// Inter-token latency: each request's gap between consecutive token deliveries (the
    /// first from its decode start), weighted by the requests that saw it.
    public var itlP50Micros: Double?
    public var itlP90Micros: Double?
    public var itlP99Micros: Double?
    /// Requests that had arrived and were neither admitted nor rejected when the run ended.
    public var requestsWaiting: Int
    /// Queueing (arrival to admission) of the requests admitted in the counted steps and of
    /// those still waiting at the end, counted with their wait so far (a lower bound: an
    /// overload shows as a growing queue instead of hiding in the requests never admitted).
    public var queueP50Micros: Double?
    public var queueP99Micros: Double?
    public var meanStepMicros: Double?
    /// The balanced counterfactual's mean step time, and the share of the step time lost to
    /// imbalance: `1 - sum(balanced) / sum(step)` over the counted steps (nil: not simulated).
    public var balancedStepMicros: Double?
    public var imbalanceShare: Double?
    /// Mean requests per rank and step; the mean over steps of the largest rank's requests
    /// (and KV tokens) over the mean rank's.
    public var meanBatch: Double?
    public var batchMaxOverMean: Double?
    public var kvMaxOverMean: Double?
    /// The ranks' dispatch and combine wait as a share of their step time.
    public var recvWaitShare: Double?
    public var wallSeconds: Double
    public var stopped: Bool

    enum CodingKeys: String, CodingKey {
        case scenario, policy, queueing, ranks, steps, stopped
        case countedSteps = "counted_steps", moeLayers = "moe_layers", simulatedMoELayers = "simulated_moe_layers"
        case requestsArrived = "requests_arrived", requestsFinished = "requests_finished", requestsRejected = "requests_rejected"
        case outputTokens = "output_tokens", tokensPerSecondPerGPU = "tokens_per_s_per_gpu"
        case tpotP50Micros = "tpot_p50_us", tpotP90Micros = "tpot_p90_us", tpotP99Micros = "tpot_p99_us"
        case itlP50Micros = "itl_p50_us", itlP90Micros = "itl_p90_us", itlP99Micros = "itl_p99_us"
        case requestsWaiting = "requests_waiting"
        case queueP50Micros = "queue_p50_us", queueP99Micros = "queue_p99_us", meanStepMicros = "mean_step_us"
        case balancedStepMicros = "balanced_step_us", imbalanceShare = "imbalance_share", meanBatch = "mean_batch"
        case batchMaxOverMean = "batch_max_over_mean", kvMaxOverMean = "kv_max_over_mean", recvWaitShare = "recv_wait_share"
        case wallSeconds = "wall_s"
    }

    /// Every key is written, an empty figure as `null` (scripts read one shape).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scenario, forKey: .scenario)
        try c.encode(policy, forKey: .policy)
        try c.encode(queueing, forKey: .queueing)
        try c.encode(ranks, forKey: .ranks)
        try c.encode(steps, forKey: .steps)
        try c.encode(countedSteps, forKey: .countedSteps)
        try c.encode(moeLayers, forKey: .moeLayers)
        try c.encode(simulatedMoELayers, forKey: .simulatedMoELayers)
        try c.encode(requestsArrived, forKey: .requestsArrived)
        try c.encode(requestsFinished, forKey: .requestsFinished)
        try c.encode(requestsRejected, forKey: .requestsRejected)
        try c.encode(requestsWaiting, forKey: .requestsWaiting)
        try c.encode(outputTokens, forKey: .outputTokens)
        try c.encode(tokensPerSecondPerGPU, forKey: .tokensPerSecondPerGPU)
        try c.encode(tpotP50Micros, forKey: .tpotP50Micros)
        try c.encode(tpotP90Micros, forKey: .tpotP90Micros)
        try c.encode(tpotP99Micros, forKey: .tpotP99Micros)
        try c.encode(itlP50Micros, forKey: .itlP50Micros)
        try c.encode(itlP90Micros, forKey: .itlP90Micros)
        try c.encode(itlP99Micros, forKey: .itlP99Micros)
        try c.encode(queueP50Micros, forKey: .queueP50Micros)
        try c.encode(queueP99Micros, forKey: .queueP99Micros)
        try c.encode(meanStepMicros, forKey: .meanStepMicros)
        try c.encode(balancedStepMicros, forKey: .balancedStepMicros)
        try c.encode(imbalanceShare, forKey: .imbalanceShare)
        try c.encode(meanBatch, forKey: .meanBatch)
        try c.encode(batchMaxOverMean, forKey: .batchMaxOverMean)
        try c.encode(kvMaxOverMean, forKey: .kvMaxOverMean)
        try c.encode(recvWaitShare, forKey: .recvWaitShare)
        try c.encode(wallSeconds, forKey: .wallSeconds)
        try c.encode(stopped, forKey: .stopped)
    }

    /// The `p`-th percentile (0...1) of weighted values: the smallest value whose cumulative
    /// weight reaches `p` of the total (nearest rank); nil for no values.
    public static func percentile(_ values: [(value: Double, weight: Int)], _ p: Double) -> Double? {
        let sorted = values.filter { $0.weight > 0 }.sorted { $0.value < $1.value }
        let total = sorted.reduce(0) { $0 + $1.weight }
        guard total > 0 else { return nil }
        let target = max(1, Int((p * Double(total)).rounded(.up)))
        var seen = 0
        for v in sorted {
            seen += v.weight
            if seen >= target { return v.value }
        }
        return sorted.last!.value
    }

    init(_ r: ServingResult) {
        let warm = r.config.warmupSteps
        let counted = r.steps.filter { $0.step >= warm }
        scenario = r.scenarioName
        policy = r.config.policy.name
        queueing = r.config.queueing.rawValue
        ranks = r.ranks
        steps = r.steps.count
        countedSteps = counted.count
        moeLayers = r.moeLayers
        simulatedMoELayers = r.simulatedMoELayers
        requestsArrived = r.requests.count
        requestsFinished = r.requests.filter { $0.finish != nil }.count
        requestsRejected = r.requests.filter(\.rejected).count
        let latency = r.requests.filter { ($0.admittedStep ?? -1) >= warm && $0.finish != nil }
        let tpots = latency.compactMap(\.tpot).map { (value: $0.micros, weight: 1) }
        tpotP50Micros = Self.percentile(tpots, 0.5)
        tpotP90Micros = Self.percentile(tpots, 0.9)
        tpotP99Micros = Self.percentile(tpots, 0.99)
        let gaps = r.interTokenGaps.map { (value: $0.gap.micros, weight: $0.requests) }
        itlP50Micros = Self.percentile(gaps, 0.5)
        itlP90Micros = Self.percentile(gaps, 0.9)
        itlP99Micros = Self.percentile(gaps, 0.99)
        // Still waiting at the end: counted with their wait up to the last step's end.
        let runEnd = r.steps.last?.end ?? .zero
        let waiting = r.requests.filter { $0.admittedStep == nil && !$0.rejected }
        requestsWaiting = waiting.count
        var queues = r.requests.filter { ($0.admittedStep ?? -1) >= warm }.compactMap(\.queueing).map { (value: $0.micros, weight: 1) }
        if !counted.isEmpty { queues += waiting.map { (value: max(.zero, runEnd - $0.request.arrival).micros, weight: 1) } }
        queueP50Micros = Self.percentile(queues, 0.5)
        queueP99Micros = Self.percentile(queues, 0.99)
        let total = counted.reduce(SimTime.zero) { $0 + $1.duration }
        outputTokens = counted.reduce(0) { $0 + $1.outputTokens }
        if !counted.isEmpty {
            meanStepMicros = total.micros / Double(counted.count)
            if r.config.counterfactual {
                let b = counted.reduce(SimTime.zero) { $0 + ($1.balanced ?? .zero) }
                balancedStepMicros = b.micros / Double(counted.count)
                imbalanceShare = total > .zero ? 1 - b.micros / total.micros : 0
            }
            var batch = 0.0
            var batchRatio = 0.0
            var kvRatio = 0.0
            var wait = SimTime.zero
            var busy = SimTime.zero
            for s in counted {
                let rows = r.rankSteps[(s.step * r.ranks)..<((s.step + 1) * r.ranks)]
                let requests = rows.map(\.requests)
                let mean = Double(requests.reduce(0, +)) / Double(r.ranks)
                batch += mean
                batchRatio += mean > 0 ? Double(requests.max()!) / mean : 1
                let kv = rows.map(\.kvTokens)
                let kvMean = Double(kv.reduce(0, +)) / Double(r.ranks)
                kvRatio += kvMean > 0 ? Double(kv.max()!) / kvMean : 1
                for row in rows {
                    wait += row.dispatchWait + row.combineWait
                    busy += row.end - row.start
                }
            }
            let c = Double(counted.count)
            meanBatch = batch / c
            batchMaxOverMean = batchRatio / c
            kvMaxOverMean = kvRatio / c
            recvWaitShare = busy > .zero ? wait.micros / busy.micros : 0
            let span = counted.last!.end - counted.first!.start
            tokensPerSecondPerGPU = span > .zero ? Double(outputTokens) / (span.micros * 1e-6) / Double(r.ranks) : nil
        }
        wallSeconds = r.wallSeconds
        stopped = r.stopped
    }
}
