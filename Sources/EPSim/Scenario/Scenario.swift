import EventCore

/// One fully resolved, validated simulation input: cluster, model, workload, schedule,
/// network and costs. Built from a YAML file by ``Scenario/load(path:)``; every per-rank
/// value is already expanded to one entry per rank.
public struct Scenario: Sendable {
    public var name: String
    public var description: String
    public var cluster: Cluster
    public var model: MoEModel
    public var workload: Workload
    /// The kernel order of every rank (a preset or the file's own schedule).
    public var schedule: ScheduleSpec
    /// Steps simulated back to back; each rank starts step `s+1` when its own step `s` ends.
    public var steps: Int
    public var network: NetworkConfig
    public var costs: CostConfig
    /// The CPU that launches the kernels; nil: always ahead of the GPU (``HostConfig``).
    public var host: HostConfig? = nil
    /// Requests arriving and leaving, for `epsim serve` (``ServingLoop``); nil: none.
    public var serving: ServingConfig? = nil
}

/// The GPUs: `ranks` of them, `gpusPerNode` per node (rank `r` is on node `r / gpusPerNode`).
public struct Cluster: Sendable, Equatable {
    public var ranks: Int
    public var gpusPerNode: Int
    /// Streaming multiprocessors per GPU (132 on H800/H100/H200).
    public var smsPerGPU: Int

    public init(ranks: Int, gpusPerNode: Int = 8, smsPerGPU: Int = 132) {
        self.ranks = ranks
        self.gpusPerNode = gpusPerNode
        self.smsPerGPU = smsPerGPU
    }

    public func node(of rank: Int) -> Int { rank / gpusPerNode }
}

/// Precision of dispatched activations, which fixes the dispatch message size.
public enum DispatchPrecision: String, Sendable, CaseIterable {
    case fp8, bf16
}

/// The parts of the MoE model that the communication and its costs depend on.
public struct MoEModel: Sendable, Equatable {
    /// Hidden size `H` (7168 for DeepSeek-V3).
    public var hidden: Int
    /// Logical routed experts `E` (the router's choices).
    public var experts: Int
    public var topK: Int
    /// MoE layers simulated per step.
    public var moeLayers: Int
    /// Dense (compute-only) layers run before the MoE layers in each step.
    public var denseLayers: Int
    public var dispatchPrecision: DispatchPrecision
    /// Physical expert slots (`P >= E`), the logical expert each holds, and their ranks.
    public var expertPlacement: ExpertPlacement
    /// Rank hosting each physical expert slot (`placement[p]`), length `P`.
    public var placement: [Int32] { expertPlacement.slotRank }
    /// Physical expert slots `P`.
    public var physicalExperts: Int { expertPlacement.slotExpert.count }
    /// Sizes the roofline cost model uses (a preset's, or generic around the keys above).
    public var architecture: Architecture

    public init(
        hidden: Int, experts: Int, topK: Int, moeLayers: Int, denseLayers: Int, dispatchPrecision: DispatchPrecision,
        expertPlacement: ExpertPlacement, architecture: Architecture? = nil
    ) {
        self.hidden = hidden
        self.experts = experts
        self.topK = topK
        self.moeLayers = moeLayers
        self.denseLayers = denseLayers
        self.dispatchPrecision = dispatchPrecision
        self.expertPlacement = expertPlacement
        self.architecture = architecture ?? .generic(hidden: hidden, experts: experts, topK: topK)
    }

    /// Bytes of one dispatch message, as DeepEP lays it out (internode_ll.cu L178-183):
    /// FP8 `16 + H + (H/128)*4` (7408 B at H = 7168), BF16 `16 + 2H` (14352 B).
    public var dispatchMessageBytes: Int64 {
        switch dispatchPrecision {
        case .fp8: return Int64(16 + hidden + (hidden / 128) * 4)
        case .bf16: return Int64(16 + 2 * hidden)
        }
    }

    /// Bytes of one combine message: a BF16 row, `2H` (14336 B at H = 7168).
    public var combineMessageBytes: Int64 { Int64(2 * hidden) }

    /// The default placement: rank `r` hosts experts `r*E/N ..< (r+1)*E/N`.
    public static func contiguousPlacement(experts: Int, ranks: Int) -> [Int32] {
        (0..<experts).map { Int32($0 / (experts / ranks)) }
    }
}

/// DeepSeek's node-limited routing: experts fall into `groups` equal groups and a token
/// may use `topGroups` of them.
public struct GroupLimit: Sendable, Equatable {
    public var groups: Int
    public var topGroups: Int
    public init(groups: Int, topGroups: Int) {
        self.groups = groups
        self.topGroups = topGroups
    }
}

/// The tokens each rank holds and how they are routed.
public struct Workload: Sendable, Equatable {
    /// `T_r`, the DP-attention batch of each rank (of every step unless `redrawTokens`).
    public var tokensPerRank: [Int]
    public var routing: RoutingKind
    public var seed: UInt64
    /// Tokens of micro-batch A on each rank in a two-micro-batch schedule; nil means
    /// `ceil(T_r / 2)`.
    public var microBatchATokens: [Int]?
    public var phase: InferencePhase
    /// Context length (KV-cache tokens per request) of each rank, for the attention cost.
    public var kvLength: [Int]
    /// Draw token counts anew each step from this distribution (step 0 included).
    public var tokenDistribution: Distribution?
    /// Popularity of each logical expert for `zipf` and `hot` (nil: all equal).
    public var popularity: [Double]?
    public var groupLimit: GroupLimit?
    public var trace: RoutingTrace?
    public var replicaPolicy: ReplicaPolicy
    /// Multi-token prediction: draft tokens each decode request verifies per step, per rank
    /// (`d`; nil: none). A request then contributes `1 + d` tokens to attention, routing,
    /// dispatch, the experts and combine, and `tokensPerRank` counts requests.
    public var draftTokens: [Int]?
    /// Probability that a draft token is accepted given that the one before it was (the
    /// DeepSeek-V3 report's 85-90% for its one MTP module); used for accepted tokens only.
    public var acceptanceRate: Double = 0
    /// DeepEP's `num_max_dispatch_tokens_per_rank` (the receive buffers' and the masked
    /// GEMM layout's rows per source rank); nil: not set, no limit checked.
    public var maxDispatchTokensPerRank: Int?
    /// NVSHMEM's queue-pair depth (`NVSHMEM_QP_DEPTH`), which bounds the capacity
    /// (``DeepEPLimits/maxDispatchTokensPerRank(qpDepth:)``).
    public var qpDepth: Int {
        get { qpDepthSetting ?? DeepEPLimits.defaultQPDepth }
        set { qpDepthSetting = newValue == DeepEPLimits.defaultQPDepth ? nil : newValue }
    }
    /// ``qpDepth`` when it differs from DeepEP's default (nil: the default), so that the
    /// scenario hash of a file without the key is unchanged (zero-valued fields are left out).
    var qpDepthSetting: Int?

    public init(
        tokensPerRank: [Int], routing: RoutingKind, seed: UInt64, microBatchATokens: [Int]? = nil,
        phase: InferencePhase = .decode, kvLength: [Int]? = nil, tokenDistribution: Distribution? = nil,
        popularity: [Double]? = nil, groupLimit: GroupLimit? = nil, trace: RoutingTrace? = nil,
        replicaPolicy: ReplicaPolicy = .roundRobin
    ) {
        self.tokensPerRank = tokensPerRank
        self.routing = routing
        self.seed = seed
        self.microBatchATokens = microBatchATokens
        self.phase = phase
        self.kvLength = kvLength ?? Array(repeating: 4096, count: tokensPerRank.count)
        self.tokenDistribution = tokenDistribution
        self.popularity = popularity
        self.groupLimit = groupLimit
        self.trace = trace
        self.replicaPolicy = replicaPolicy
    }

    /// Seed purpose for token-count draws.
    static let tokenPurpose: UInt64 = 0x70C3

    /// `acceptance_rate` when draft tokens are given without it: 0.85, the low end of the
    /// DeepSeek-V3 technical report's "acceptance rate of the second token prediction ranges
    /// between 85% and 90%" (section 5.4.3).
    public static let defaultAcceptanceRate = 0.85

    /// Tokens each request of `rank` brings to a step: `1 + draft tokens` (1 without MTP).
    @inline(__always) public func queryTokensPerRequest(rank: Int) -> Int { 1 + (draftTokens?[rank] ?? 0) }

    /// Expected tokens a request of `rank` keeps per step: `1 + p + p^2 + ... + p^d` (a draft
    /// token counts only when every draft before it was accepted), 1 without MTP.
    public func acceptedTokensPerRequest(rank: Int) -> Double {
        Self.acceptedTokensPerRequest(draftTokens: draftTokens?[rank] ?? 0, acceptanceRate: acceptanceRate)
    }

    /// `1 + p + p^2 + ... + p^d`: the expected tokens a request keeps when it verifies `d`
    /// draft tokens, each accepted with probability `p` once the one before it was.
    public static func acceptedTokensPerRequest(draftTokens d: Int, acceptanceRate: Double) -> Double {
        var sum = 1.0
        var term = 1.0
        for _ in 0..<d {
            term *= acceptanceRate
            sum += term
        }
        return sum
    }

    /// Requests (decode; tokens in prefill) of `rank` in `step`: `tokens_per_rank`, or its
    /// distribution's draw for the step.
    public func requests(step: Int, rank: Int) -> Int {
        // Step 0 too: its draw is the one `tokensPerRank` holds, clamped like every other.
        guard let d = tokenDistribution else { return tokensPerRank[rank] }
        return d.draw(rank: rank, step: step, seed: seed, purpose: Self.tokenPurpose, range: 0...requestLimit(rank: rank))
    }

    /// The most requests a drawn batch of `rank` may hold: the token limit over the tokens
    /// per request, and no more than the dispatch capacity allows (`maxRequestsPerRank`).
    func requestLimit(rank: Int) -> Int {
        let byTokens = ScenarioLimits.maxTokensPerRank / queryTokensPerRequest(rank: rank)
        return maxRequestsPerRank.map { min($0, byTokens) } ?? byTokens
    }

    /// The most requests a rank's batch may hold for every micro-batch's dispatch to fit
    /// `maxDispatchTokensPerRank` with the default split (A the first `ceil(R/2)` requests):
    /// `floor(C / (1 + d))` per micro-batch. nil without a capacity.
    public func requestCap(microBatches: Int) -> Int? {
        guard let capacity = maxDispatchTokensPerRank else { return nil }
        let d = draftTokens?.max() ?? 0
        return capacity / (1 + d) * max(microBatches, 1)
    }

    /// Set by ``Scenario`` for a schedule with a dispatch capacity: a drawn batch is clamped
    /// to what fits every micro-batch's dispatch (a scheduler never admits more than the
    /// buffers hold). nil: the token limit only.
    public var maxRequestsPerRank: Int?

    /// Tokens of `rank` in `step`: its requests times the tokens each brings.
    public func tokens(step: Int, rank: Int) -> Int {
        requests(step: step, rank: rank) * queryTokensPerRequest(rank: rank)
    }

    /// The tokens of `rank` in micro-batch `mb` of `step` when the batch is split into
    /// `microBatches`: A is the first `microBatchATokens[rank]` (default `ceil(T/2)`) tokens,
    /// B the rest.
    public func tokenRange(rank: Int, step: Int = 0, microBatch mb: MicroBatch, of microBatches: Int) -> Range<Int> {
        plan(step: step).tokenRange(rank: rank, microBatch: mb, of: microBatches)
    }
}

/// A transport between two ranks.
public enum Path: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case nvlink = 0
    case rdma = 1
    public var description: String { self == .nvlink ? "nvlink" : "rdma" }
}

/// One direction of a link: bandwidth in GB/s (10^9 bytes/s) and base latency.
public struct LinkConfig: Sendable, Equatable {
    public var bandwidthGBps: Double
    public var latency: SimTime
    public init(bandwidthGBps: Double, latency: SimTime) {
        self.bandwidthGBps = bandwidthGBps
        self.latency = latency
    }
}

/// Which network model carries the flows.
public enum NetworkKind: String, Sendable, CaseIterable {
    /// Contended ports, each shared by its flows in processor sharing on its own (a
    /// deep-buffered switch decouples a flow's two ports); NVLink payload moved by the SEND
    /// kernel's SMs (see ``PortNetwork``).
    case ports
    /// Contended ports with every flow's rate max-min fair across its egress and ingress at
    /// once (a congestion-controlled fabric; see ``FairNetwork``). Exact, and slow at scale.
    case fair
    /// Each flow alone on its links: `latency + bytes / bandwidth` (the contract's closed form).
    case ideal

    /// `rdma_data` when the file leaves it out: the model's own default
    /// (``NetworkModel/rdmaDataDuringSendByDefault``).
    public var rdmaDataDuringSendByDefault: Bool {
        switch self {
        case .ports: PortNetwork.rdmaDataDuringSendByDefault
        case .fair: FairNetwork.rdmaDataDuringSendByDefault
        case .ideal: IdealNetwork.rdmaDataDuringSendByDefault
        }
    }
}

public struct NetworkConfig: Sendable, Equatable {
    public var kind: NetworkKind
    public var nvlink: LinkConfig
    public var rdma: LinkConfig
    /// DeepEP's `allow_nvlink_for_low_latency_mode`: same-node peers use NVLink when true,
    /// RDMA otherwise. A rank's messages to itself always take the NVLink path.
    public var nvlinkForLowLatency: Bool
    /// One extra round trip (2 x latency) before each control message that follows data
    /// over RDMA: the fence of multipath NICs (DeepEP #437).
    public var fenceControlMessages: Bool
    /// RDMA data starts moving when the SEND starts (DeepEP issues each token's writes as
    /// the kernel processes it) rather than when it ends. The control message still leaves
    /// at the end of the SEND. Default: on for `ports`, off for `ideal` (the contract's
    /// closed form counts flights from the end of the SEND).
    public var rdmaDataDuringSend: Bool
    /// GB/s of a rank's copy to itself inside its SEND kernel (`ports` network, where the
    /// SEND's SMs write NVLink and self payload); default: the NVLink bandwidth.
    public var selfCopyGBps: Double
    /// NICs per node, shared evenly by the node's GPUs (``Topology``); nil: one per GPU.
    public var nicsPerNode: Int?
    /// GB/s a GPU's NVLink ports take in, summed over its peers (`nvlink.ingress_gbps`):
    /// NVLink flows into one rank share it (contended models). `.infinity`: never contended.
    public var nvlinkIngressGBps: Double {
        get { nvlinkIngressLimit ?? .infinity }
        set { nvlinkIngressLimit = newValue.isFinite ? newValue : nil }
    }
    /// Messages per second a NIC posts, in millions (`rdma.message_rate_mps`): each data
    /// message costs its egress port `1 / rate` on top of its bytes. `.infinity`: free.
    public var rdmaMessageRateMps: Double {
        get { rdmaMessageRateLimit ?? .infinity }
        set { rdmaMessageRateLimit = newValue.isFinite ? newValue : nil }
    }
    /// The two limits as stored: nil when unlimited, so that a scenario without them keeps
    /// the canonical form (and the content hash) it had before they existed.
    var nvlinkIngressLimit: Double?
    var rdmaMessageRateLimit: Double?

    public init(
        kind: NetworkKind, nvlink: LinkConfig, rdma: LinkConfig, nvlinkForLowLatency: Bool, fenceControlMessages: Bool,
        rdmaDataDuringSend: Bool? = nil, selfCopyGBps: Double? = nil, nicsPerNode: Int? = nil,
        nvlinkIngressGBps: Double = .infinity, rdmaMessageRateMps: Double = .infinity
    ) {
        self.kind = kind
        self.nvlink = nvlink
        self.rdma = rdma
        self.nvlinkForLowLatency = nvlinkForLowLatency
        self.fenceControlMessages = fenceControlMessages
        self.rdmaDataDuringSend = rdmaDataDuringSend ?? kind.rdmaDataDuringSendByDefault
        self.selfCopyGBps = selfCopyGBps ?? nvlink.bandwidthGBps
        self.nicsPerNode = nicsPerNode
        self.nvlinkIngressGBps = nvlinkIngressGBps
        self.rdmaMessageRateMps = rdmaMessageRateMps
    }

    /// Bytes of egress port time one RDMA data message costs besides its payload (the NIC's
    /// message rate as bytes it could have sent meanwhile): `bandwidth / rate`, 0 when either
    /// is infinite.
    public var rdmaBytesPerMessage: Double {
        rdmaMessageRateMps.isInfinite || rdma.bandwidthGBps.isInfinite ? 0 : rdma.bandwidthGBps * 1000 / rdmaMessageRateMps
    }

    /// Time an RDMA flow of `bytes` in `messages` data messages holds its egress port alone:
    /// `(bytes + messages x rdmaBytesPerMessage) / bandwidth`, rounded up to a picosecond
    /// (``SimTime/transfer(bytes:gigabytesPerSecond:)`` when messages cost nothing).
    @inline(__always) public func rdmaEgressTime(bytes: Int64, messages: Int32) -> SimTime {
        let perMessage = rdmaBytesPerMessage
        if perMessage == 0 || messages == 0 { return SimTime.transfer(bytes: bytes, gigabytesPerSecond: rdma.bandwidthGBps) }
        return SimTime.saturating(picos: ((Double(bytes) + Double(messages) * perMessage) * 1000 / rdma.bandwidthGBps).rounded(.up))
    }

    public func link(_ path: Path) -> LinkConfig { path == .nvlink ? nvlink : rdma }

    /// The fence rule, in one place: the extra time before a flow's control message may
    /// leave after its data, one round trip (2 x RDMA latency) when `fence` is on and an
    /// RDMA flow carried data, zero otherwise.
    @inline(__always) public func fenceDelay(path: Path, bytes: Int64) -> SimTime {
        fenceControlMessages && path == .rdma && bytes > 0 ? rdma.latency + rdma.latency : .zero
    }
}

/// Cost of a SEND kernel: a fixed part plus a part per data message posted.
/// Count and flag messages are not counted (contract §3).
public struct SendCost: Sendable, Equatable {
    public var fixed: [SimTime]
    public var perMessage: SimTime
    /// Combine: the GB/s of the one warp group that sends a (peer, local expert) pair's
    /// rows (``Hardware/combineSendPairGBps``); infinite for no limit.
    public var pairGBps: Double = .infinity
}

/// Cost of a RECV kernel after the last arrival: a fixed part plus the bytes copied
/// (dispatch) or reduced (combine) at `copyGBps`.
public struct RecvCost: Sendable, Equatable {
    public var fixed: [SimTime]
    public var copyGBps: Double
    /// Dispatch: the GB/s of the one warp group that copies a (source, local expert) pair's
    /// rows (``Hardware/dispatchRecvPairGBps``); infinite for no limit.
    public var pairGBps: Double = .infinity
}

/// Where a compute kernel's duration comes from.
public enum ComputeCost: Sendable, Equatable {
    /// Fixed per rank, for the whole batch (split between micro-batches by tokens).
    case wholeBatch([SimTime])
    /// Fixed per rank and micro-batch.
    case perMicroBatch(a: [SimTime], b: [SimTime])
    /// Derived from the hardware and the model: the larger of FLOPs over peak and bytes over
    /// HBM bandwidth, plus a fixed overhead (see ``CostModel``).
    case roofline
    /// Interpolated in a measured table of (tokens, µs) points, sorted by tokens.
    case table([MeasuredPoint])
}

/// One measured kernel time.
public struct MeasuredPoint: Sendable, Equatable {
    public var tokens: Double
    public var micros: Double
    public init(tokens: Double, micros: Double) {
        self.tokens = tokens
        self.micros = micros
    }
}

/// Decode (one new token per request, reading its KV cache) or prefill (whole prompts).
public enum InferencePhase: String, Sendable, CaseIterable {
    case decode, prefill
}

/// First-level cost terms: per-rank fixed durations for compute kernels, and
/// fixed-plus-proportional terms for communication kernels.
public struct CostConfig: Sendable, Equatable {
    public var attn0: ComputeCost
    public var attn1: ComputeCost
    public var shared: ComputeCost
    /// Routed-expert grouped GEMM (`MLP`), per rank, for its whole received batch.
    public var gemm: ComputeCost
    /// The MLP of a dense layer (always the whole batch).
    public var denseMLP: ComputeCost
    /// The GPU the roofline model and the presets' defaults describe.
    public var hardware: Hardware
    public var dispatchSend: SendCost
    public var dispatchRecv: RecvCost
    public var combineSend: SendCost
    public var combineRecv: RecvCost
    /// Idle time of a stream before each kernel it launches (compute kernels of zero
    /// duration stand for no kernel and take none); zero for none.
    public var launchGap: SimTime = .zero
    /// The rows the routed-expert grouped GEMM computes (`costs.expert_gemm`).
    public var expertGEMM: ExpertGEMMLayout {
        get { expertGEMMSetting ?? .masked }
        set { expertGEMMSetting = newValue == .masked ? nil : newValue }
    }
    /// ``expertGEMM`` when not the default (nil: masked), so that the scenario hash of a file
    /// without the key is unchanged (zero-valued fields are left out).
    var expertGEMMSetting: ExpertGEMMLayout?
}

/// Which rows of DeepEP's packed low-latency receive buffer (`[local experts, ranks x C,
/// hidden]`, `C` = `workload.max_dispatch_tokens_per_rank`) the routed-expert GEMM computes.
public enum ExpertGEMMLayout: String, Sendable, Equatable, CaseIterable {
    /// DeepGEMM's `m_grouped_fp8_gemm_nt_masked` (SGLang's and DeepEP's own tests' choice):
    /// each expert's received rows (`masked_m`), rounded up to the 64-row tile; blocks past
    /// `masked_m` exit at once. `expected_m` only picks the tiling, which EPSim does not model.
    case masked
    /// A GEMM over the whole buffer: `ranks x C` rows for every local expert, whatever it
    /// received, as vLLM's DeepEP V2 decode path ran before pull request 46404 bounded `C`
    /// ("the expert kernels processed ~R x 8192 rows even when only a handful of decode
    /// tokens were present").
    case padded
}
