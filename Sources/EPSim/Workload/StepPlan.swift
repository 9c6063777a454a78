import EventCore

/// What every rank works on in one step: its DP-attention batch, how the batch splits into
/// micro-batches, and its requests' KV-cache length. Computed once per step by a
/// ``StepSource``; the engine, the routing and the cost model read it instead of
/// re-evaluating the workload per kernel.
public struct StepPlan: Sendable, Equatable {
    public let step: Int
    /// `T_r`: tokens of each rank in this step.
    public var tokens: [Int]
    /// Tokens of micro-batch A on each rank in a two-micro-batch schedule; nil: `ceil(T_r / 2)`.
    /// A value above `T_r` is clamped to it (micro-batch B is then empty).
    public var microBatchATokens: [Int]?
    /// KV-cache tokens per request on each rank, for the attention cost.
    public var kvLength: [Int]
    /// Tokens each request brings on each rank: `1 + draft tokens` with multi-token
    /// prediction; nil: one (a request is a token). A rank's `tokens` is then a multiple of it.
    public var queryTokensPerRequest: [Int]?
    /// The KV-cache length of each request on each rank, in batch order (micro-batch A holds
    /// the first requests), when they differ (a serving loop's requests); nil: every request
    /// of rank `r` has `kvLength[r]`. `requestKV[r].count` must be the rank's requests.
    public var requestKV: [[Int]]?

    public init(
        step: Int, tokens: [Int], microBatchATokens: [Int]? = nil, kvLength: [Int], queryTokensPerRequest: [Int]? = nil,
        requestKV: [[Int]]? = nil
    ) {
        self.step = step
        self.tokens = tokens
        self.microBatchATokens = microBatchATokens
        self.kvLength = kvLength
        self.queryTokensPerRequest = queryTokensPerRequest
        self.requestKV = requestKV
    }

    /// The KV-cache tokens that the requests behind `range` (a token range of `rank`, as
    /// ``tokenRange(rank:microBatch:of:)`` gives) read: the sum of their ``requestKV``, nil
    /// when the plan gives one length per rank. A request split across micro-batches
    /// counts in both (as ``requests(rank:tokens:)`` does).
    public func kvTokens(rank: Int, range: Range<Int>) -> Int? {
        guard let kv = requestKV?[rank], !range.isEmpty else { return requestKV == nil ? nil : 0 }
        let q = queryTokens(rank: rank)
        var sum = 0
        for i in (range.lowerBound / q)..<((range.upperBound + q - 1) / q) { sum += kv[i] }
        return sum
    }

    /// Tokens per request of `rank` (1 without multi-token prediction).
    @inline(__always) public func queryTokens(rank: Int) -> Int { queryTokensPerRequest?[rank] ?? 1 }

    public var ranks: Int { tokens.count }

    /// The tokens of `rank` in micro-batch `mb` when the batch is split into `microBatches`:
    /// A is the first `microBatchATokens[rank]` (default the first `ceil(R/2)` of the rank's
    /// `R` requests, all of each request's tokens: `ceil(T/2)` without multi-token
    /// prediction) tokens, B the rest.
    @inline(__always) public func tokenRange(rank: Int, microBatch mb: MicroBatch, of microBatches: Int) -> Range<Int> {
        let t = tokens[rank]
        guard microBatches == 2 else { return 0..<t }
        let q = queryTokens(rank: rank)
        let a = min(microBatchATokens?[rank] ?? (t / q + 1) / 2 * q, t)
        return mb == .a ? 0..<a : a..<t
    }

    /// The requests behind `tokens` tokens of `rank`: whole requests, at least one when
    /// there is any token (a micro-batch split inside a request counts it in both).
    @inline(__always) public func requests(rank: Int, tokens count: Int) -> Int {
        let q = queryTokens(rank: rank)
        return q == 1 ? count : (count + q - 1) / q
    }
}

/// Where the engine's step plans come from. The engine asks for step `s`'s plan once,
/// when the first rank begins step `s` (every rank's batch must be known then: the routing
/// of each layer of the step covers all ranks), and tells the source when each rank ends
/// each step, so that a source that schedules requests (a serving loop, host launch gating)
/// can decide later steps from what it has seen.
///
/// Adding a source: a conformer in `Sources/EPSim/Workload/` and an entry point that hands
/// it to the engine (see docs/architecture.md).
public protocol StepSource {
    /// The plan of `step`, asked once, at `time` (when the first rank begins it). Its
    /// `tokens`, `kvLength` and `microBatchATokens` must have one entry per rank.
    mutating func plan(step: Int, at time: SimTime) -> StepPlan
    /// `rank` ended `step` at `time`.
    mutating func rankFinished(rank: RankID, step: Int, at time: SimTime)
}

/// The scenario's `workload` section as a step source: fixed batches, or batches drawn
/// anew each step from `tokens_per_rank`'s distribution (`redraw_tokens`), each rank's draw
/// computed once per step.
public struct StaticWorkloadSource: StepSource {
    public let workload: Workload

    public init(workload: Workload) { self.workload = workload }

    public func plan(step: Int, at time: SimTime = .zero) -> StepPlan {
        StepPlan(
            step: step, tokens: (0..<workload.tokensPerRank.count).map { workload.tokens(step: step, rank: $0) },
            microBatchATokens: workload.microBatchATokens, kvLength: workload.kvLength,
            queryTokensPerRequest: workload.draftTokens.map { d in d.map { 1 + $0 } })
    }

    public func rankFinished(rank: RankID, step: Int, at time: SimTime) {}
}

extension Workload {
    /// This workload's plan of `step` (``StaticWorkloadSource``).
    public func plan(step: Int) -> StepPlan { StaticWorkloadSource(workload: self).plan(step: step) }
}
