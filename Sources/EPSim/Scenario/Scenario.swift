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
    /// Physical routed experts `E`.
    public var experts: Int
    public var topK: Int
    /// MoE layers simulated per step.
    public var moeLayers: Int
    /// Dense (compute-only) layers run before the MoE layers in each step.
    public var denseLayers: Int
    public var dispatchPrecision: DispatchPrecision
    /// Rank hosting each physical expert (`placement[e]`), length `E`.
    public var placement: [Int32]

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

/// How tokens pick experts.
public enum RoutingKind: String, Sendable, CaseIterable {
    /// Token `g` (numbered globally over ranks) picks experts `(g*k + j) mod E`, `j < k`.
    case balanced
    /// Seeded random top-k without replacement, drawn anew for every layer and step.
    case uniform
}

/// The tokens each rank holds and how they are routed.
public struct Workload: Sendable, Equatable {
    /// `T_r`, the DP-attention batch of each rank.
    public var tokensPerRank: [Int]
    public var routing: RoutingKind
    public var seed: UInt64
    /// Tokens of micro-batch A on each rank in a two-micro-batch schedule; nil means
    /// `ceil(T_r / 2)`.
    public var microBatchATokens: [Int]?

    public init(tokensPerRank: [Int], routing: RoutingKind, seed: UInt64, microBatchATokens: [Int]? = nil) {
        self.tokensPerRank = tokensPerRank
        self.routing = routing
        self.seed = seed
        self.microBatchATokens = microBatchATokens
    }

    /// The tokens of `rank` in micro-batch `mb` when the batch is split into `microBatches`:
    /// A is the first `microBatchATokens[rank]` (default `ceil(T/2)`) tokens, B the rest.
    public func tokenRange(rank: Int, microBatch mb: MicroBatch, of microBatches: Int) -> Range<Int> {
        let tokens = tokensPerRank[rank]
        guard microBatches == 2 else { return 0..<tokens }
        let a = microBatchATokens?[rank] ?? (tokens + 1) / 2
        return mb == .a ? 0..<a : a..<tokens
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
    /// Contended NIC ports shared in processor sharing; NVLink payload moved by the SEND
    /// kernel's SMs (see ``PortNetwork``).
    case ports
    /// Each flow alone on its links: `latency + bytes / bandwidth` (the contract's closed form).
    case ideal
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

    public init(kind: NetworkKind, nvlink: LinkConfig, rdma: LinkConfig, nvlinkForLowLatency: Bool, fenceControlMessages: Bool,
                rdmaDataDuringSend: Bool? = nil) {
        self.kind = kind
        self.nvlink = nvlink
        self.rdma = rdma
        self.nvlinkForLowLatency = nvlinkForLowLatency
        self.fenceControlMessages = fenceControlMessages
        self.rdmaDataDuringSend = rdmaDataDuringSend ?? (kind == .ports)
    }

    /// The path from `source` to `destination`.
    public func path(from source: Int, to destination: Int, in cluster: Cluster) -> Path {
        if source == destination { return .nvlink }
        if nvlinkForLowLatency && cluster.node(of: source) == cluster.node(of: destination) { return .nvlink }
        return .rdma
    }

    public func link(_ path: Path) -> LinkConfig { path == .nvlink ? nvlink : rdma }
}

/// Cost of a SEND kernel: a fixed part plus a part per data message posted.
/// Count and flag messages are not counted (contract §3).
public struct SendCost: Sendable, Equatable {
    public var fixed: [SimTime]
    public var perMessage: SimTime
}

/// Cost of a RECV kernel after the last arrival: a fixed part plus the bytes copied
/// (dispatch) or reduced (combine) at `copyGBps`.
public struct RecvCost: Sendable, Equatable {
    public var fixed: [SimTime]
    public var copyGBps: Double
}

/// A compute kernel's fixed duration per rank: for the whole batch (split between
/// micro-batches in proportion to tokens), or given for each micro-batch explicitly.
public enum ComputeCost: Sendable, Equatable {
    case wholeBatch([SimTime])
    case perMicroBatch(a: [SimTime], b: [SimTime])

    /// The whole-batch duration of `rank`.
    public func whole(_ rank: Int) -> SimTime {
        switch self {
        case .wholeBatch(let d): return d[rank]
        case .perMicroBatch(let a, let b): return a[rank] + b[rank]
        }
    }
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
    public var denseMLP: [SimTime]
    public var dispatchSend: SendCost
    public var dispatchRecv: RecvCost
    public var combineSend: SendCost
    public var combineRecv: RecvCost
}
