/// The kinds of kernel a rank executes, in the contract's vocabulary (§7).
public enum KernelKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// MLA projections before core attention.
    case attn0
    /// Core attention, output projection and the routing gate.
    case attn1
    /// Shared experts.
    case shared
    /// Routed-expert grouped GEMM over the tokens this rank's experts received.
    case mlp
    /// The MLP of a dense (non-MoE) layer.
    case dense
    /// Dispatch SEND half (hook mode): posts data and count messages, then exits.
    case sendDispatch
    /// Dispatch RECV half: spins until every (source, local expert) count has arrived, then copies.
    case recvDispatch
    /// Combine SEND half: returns expert outputs, then a flag per (expert, source rank).
    case sendCombine
    /// Combine RECV half: waits for all `E` flags, then reduces `T * top_k` rows.
    case recvCombine
    /// Fused dispatch: SEND then RECV in one kernel (no hook).
    case dispatch
    /// Fused combine: SEND then RECV in one kernel.
    case combine
    /// An explicit barrier (not part of DeepEP's low-latency path): every rank signals every
    /// rank and waits for all of them. For showing what a barrier would cost.
    case barrier

    /// The contract's name of the kind (`SEND-D`, `ATTN0`, ...).
    public var description: String {
        switch self {
        case .attn0: return "ATTN0"
        case .attn1: return "ATTN1"
        case .shared: return "SHARED"
        case .mlp: return "MLP"
        case .dense: return "DENSE"
        case .sendDispatch: return "SEND-D"
        case .recvDispatch: return "RECV-D"
        case .sendCombine: return "SEND-C"
        case .recvCombine: return "RECV-C"
        case .dispatch: return "DISPATCH"
        case .combine: return "COMBINE"
        case .barrier: return "BARRIER"
        }
    }

    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = kind
    }

    /// True for kernels that post messages.
    public var sends: Bool { self == .sendDispatch || self == .sendCombine || self == .dispatch || self == .combine }
    /// True for kernels that wait for arrivals.
    public var receives: Bool { self == .recvDispatch || self == .recvCombine || self == .dispatch || self == .combine }
    /// True for the dispatch side of the all-to-all pair.
    public var isDispatchSide: Bool { self == .sendDispatch || self == .recvDispatch || self == .dispatch }
    public var isCommunication: Bool { sends || receives }
    /// True for kernels whose duration is compute (slowed when a comm kernel holds SMs).
    public var isCompute: Bool { !isCommunication && self != .barrier }
}

/// A CUDA stream of one rank. Kernels on one stream run one at a time, in program order.
public enum StreamKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case compute = 0
    case comm = 1
    public var description: String { self == .compute ? "compute" : "comm" }
}

/// One kernel launch of a rank's per-step program.
public struct Instruction: Sendable, Equatable {
    public var kind: KernelKind
    public var microBatch: MicroBatch
    /// Absolute model layer: dense layers first (`0 ..< D`), then MoE layers.
    public var layer: Int32
    /// Index among MoE layers, or -1 for a dense layer.
    public var moeLayer: Int32
    public var stream: StreamKind
    /// Ordinal of the communication operation (dispatch or combine) within the step, shared
    /// by the SEND and RECV halves of one operation; -1 for compute kernels.
    public var commOp: Int32
    /// Normal mode: ordinal of the count exchange that opens a dispatch; -1 otherwise.
    public var notifyOp: Int32
    /// Instructions on the other stream that must have ended before this one starts
    /// (cross-stream data dependencies, like `cudaStreamWaitEvent`).
    public var crossStreamDependencies: [Int32]
    /// Single-batch overlap: the one cross-stream producer (an `MLP`) whose down projection's
    /// start, not its end, releases this combine SEND; -1 for none.
    public var releasedByDownGEMM: Int32 = -1

    /// `KIND(MB, layer L)` for messages.
    public var label: String { moeLayer < 0 ? "\(kind)(dense layer \(layer))" : "\(kind)(\(microBatch), layer \(moeLayer))" }
}
