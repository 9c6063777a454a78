import EventCore

/// The scenario's `serving:` section: decode requests that arrive, are assigned to a
/// DP-attention rank, grow their KV cache a token (or, with multi-token prediction, the
/// accepted tokens) per step, and leave after their output; simulated by ``ServingLoop``
/// one decode step at a time with the engine. Decode only: each request arrives with its
/// prompt's KV cache already filled (prefill runs elsewhere, as in disaggregated serving).
public struct ServingConfig: Sendable, Equatable {
    /// When requests arrive.
    public enum Arrivals: Sendable, Equatable {
        /// A Poisson process: exponential gaps of mean `1 / rate`.
        case poisson(ratePerSecond: Double)
        /// `size` requests at once every `intervalMicros`, the first burst at zero.
        case bursts(size: Int, intervalMicros: Double)
        /// A closed loop: `concurrency` requests at zero, and a new one whenever one finishes
        /// (at its last token: no think time).
        case closedLoop(concurrency: Int)
        /// Each request's arrival and lengths from a CSV (`arrival_us,input_tokens,output_tokens`).
        case trace([TraceRequest])
    }

    /// One row of a request trace.
    public struct TraceRequest: Sendable, Equatable {
        public var arrivalMicros: Double
        public var inputTokens: Int
        public var outputTokens: Int
        public init(arrivalMicros: Double, inputTokens: Int, outputTokens: Int) {
            self.arrivalMicros = arrivalMicros
            self.inputTokens = inputTokens
            self.outputTokens = outputTokens
        }
    }

    /// Which rank a request goes to. Every policy chooses among the ranks that can take it
    /// (``ServingConfig/maxRequestsPerRank``, ``ServingConfig/kvCapacityTokens``); ties go
    /// to the lowest rank.
    public enum Policy: Sendable, Equatable {
        /// The next rank after the last one chosen (SGLang's `round_robin` DP balancer).
        case roundRobin
        /// A seeded uniform draw.
        case random
        /// The fewest requests (SGLang's `shortest_queue`).
        case leastRequests
        /// The fewest KV-cache tokens in use: DeepSeek's decode load balancer, which
        /// "balances KV cache usage ... and request counts per GPU" (DeepSeek, "Day 6: One
        /// more thing, DeepSeek-V3/R1 inference system overview", 2025).
        case leastKV
        /// The least `requests x n_r / mean(n) + kv x kv_r / mean(kv)`: each rank's requests
        /// and KV tokens over their means across all ranks (queued ones counted with
        /// `per-rank` queueing), so the weights compare like with like. (Dividing by the
        /// capacities instead made the KV term vanish under the default, unbounded capacity.)
        case weighted(requests: Double, kv: Double)

        /// The name the scenario file uses.
        public var name: String {
            switch self {
            case .roundRobin: "round-robin"
            case .random: "random"
            case .leastRequests: "least-requests"
            case .leastKV: "least-kv"
            case let .weighted(r, k): "weighted(requests \(r), kv \(k))"
            }
        }

        public static let names = ["round-robin", "random", "least-requests", "least-kv", "weighted"]
    }

    /// Where requests wait.
    public enum Queueing: String, Sendable, Equatable, CaseIterable {
        /// One queue; a request is assigned when admitted, to a rank with room (the issue's
        /// central scheduler). First come, first served: the head waits for room, and so do
        /// those behind it.
        case central
        /// Each request is assigned on arrival and waits in its rank's queue (SGLang's DP
        /// controller dispatches on arrival); a rank admits from its own queue only.
        case perRank = "per-rank"
    }

    public var arrivals: Arrivals
    /// Open-loop arrivals stop after this many requests (nil: as many as the steps take).
    public var requestLimit: Int?
    /// The KV-cache tokens a request arrives with (its prompt), and the tokens it generates.
    public var inputTokens: Distribution
    public var outputTokens: Distribution
    public var policy: Policy
    public var queueing: Queueing
    /// The most requests a rank decodes at once (its DP-attention batch capacity).
    public var maxRequestsPerRank: Int
    /// KV-cache tokens a rank holds. Admission reserves a request's whole footprint (input
    /// plus output tokens), so no rank runs out mid-decode and nothing is preempted; real
    /// schedulers reserve an estimate and retract on overflow (SGLang), which is not modelled.
    public var kvCapacityTokens: Int
    /// Decode steps simulated (fewer when every request has finished and none will come).
    public var steps: Int
    /// Steps left out of the figures: requests admitted before it, and its step times.
    public var warmupSteps: Int
    /// MoE layers simulated per step (``ServingLoop``'s fast path: the rest extrapolated
    /// from the steady layers); nil: all of them.
    public var simulatedMoELayers: Int?
    /// Simulate, each step, the same requests spread evenly (the balanced counterfactual).
    public var counterfactual: Bool
    /// Seeds arrivals, lengths, the random policy and accepted draft tokens.
    public var seed: UInt64

    public init(
        arrivals: Arrivals, requestLimit: Int? = nil, inputTokens: Distribution, outputTokens: Distribution, policy: Policy = .roundRobin,
        queueing: Queueing = .central, maxRequestsPerRank: Int, kvCapacityTokens: Int = 1 << 40, steps: Int, warmupSteps: Int = 0,
        simulatedMoELayers: Int? = nil, counterfactual: Bool = true, seed: UInt64 = 0
    ) {
        self.arrivals = arrivals
        self.requestLimit = requestLimit
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.policy = policy
        self.queueing = queueing
        self.maxRequestsPerRank = maxRequestsPerRank
        self.kvCapacityTokens = kvCapacityTokens
        self.steps = steps
        self.warmupSteps = warmupSteps
        self.simulatedMoELayers = simulatedMoELayers
        self.counterfactual = counterfactual
        self.seed = seed
    }

    /// The largest input and output lengths a request may have (16 M KV tokens, as
    /// `workload.kv_length`; 1 M output tokens).
    public static let maxInputTokens = 1 << 24
    public static let maxOutputTokens = 1 << 20
    /// The most steps a serving run simulates.
    public static let maxSteps = 1_000_000
    /// The most (step, rank) rows a run keeps (about 64 bytes each, 2 GB in all).
    public static let maxRankSteps = 1 << 25
}
