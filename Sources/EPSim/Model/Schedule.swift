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
    /// True for the dispatch half of the all-to-all pair.
    public var isDispatchSide: Bool { self == .sendDispatch || self == .recvDispatch || self == .dispatch }
    public var isCommunication: Bool { sends || receives }
}

/// A CUDA stream of one rank. Kernels on one stream run one at a time, in program order.
public enum StreamKind: UInt8, Sendable, CustomStringConvertible {
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
    /// Ordinal of the low-latency operation (dispatch or combine) within the step, shared by
    /// the SEND and RECV halves of one operation; -1 for compute kernels.
    public var commOp: Int32
}

/// A named schedule: how each rank orders the kernels of a step.
public enum SchedulePreset: String, Sendable, CaseIterable {
    /// One micro-batch, fused DISPATCH and COMBINE:
    /// `ATTN0 ATTN1 SHARED DISPATCH MLP COMBINE` per layer.
    case none
    /// DeepSeek's five-stage two-micro-batch decode overlap (hook mode).
    case deepseekDecode = "deepseek-decode"

    /// Micro-batches the schedule splits each rank's batch into.
    public var microBatches: Int { self == .none ? 1 : 2 }
}

/// The per-step program every rank runs (durations differ per rank; the order does not).
public struct Program: Sendable {
    public var instructions: [Instruction]
    /// Low-latency operations (dispatch or combine) per step.
    public var commOpsPerStep: Int
    public var microBatches: Int

    /// Builds the program of `preset` for `denseLayers` dense then `moeLayers` MoE layers.
    public init(preset: SchedulePreset, denseLayers: Int, moeLayers: Int) {
        var b = ProgramBuilder(denseLayers: denseLayers)
        for l in 0..<denseLayers {
            let layer = Int32(l)
            b.add(.attn0, .a, layer: layer, moe: -1)
            b.add(.attn1, .a, layer: layer, moe: -1)
            b.add(.dense, .a, layer: layer, moe: -1)
        }
        switch preset {
        case .none:
            for l in 0..<moeLayers {
                for kind in [KernelKind.attn0, .attn1, .shared, .dispatch, .mlp, .combine] {
                    b.add(kind, .a, moe: l)
                }
            }
        case .deepseekDecode:
            b.add(.attn0, .a, moe: 0)
            b.add(.attn1, .a, moe: 0)
            b.add(.sendDispatch, .a, moe: 0)
            for l in 0..<moeLayers {
                let last = l == moeLayers - 1
                b.add(.shared, .a, moe: l)
                b.add(.attn0, .b, moe: l)
                b.add(.recvDispatch, .a, moe: l)
                b.add(.mlp, .a, moe: l)
                b.add(.sendCombine, .a, moe: l)
                b.add(.attn1, .b, moe: l)
                b.add(.recvCombine, .a, moe: l)
                b.add(.sendDispatch, .b, moe: l)
                b.add(.shared, .b, moe: l)
                if !last { b.add(.attn0, .a, moe: l + 1) }
                b.add(.recvDispatch, .b, moe: l)
                b.add(.mlp, .b, moe: l)
                b.add(.sendCombine, .b, moe: l)
                if !last { b.add(.attn1, .a, moe: l + 1) }
                b.add(.recvCombine, .b, moe: l)
                if !last { b.add(.sendDispatch, .a, moe: l + 1) }
            }
        }
        self.instructions = b.instructions
        self.commOpsPerStep = b.commOps
        self.microBatches = preset.microBatches
    }
}

/// Appends instructions and numbers the low-latency operations in SEND order.
struct ProgramBuilder {
    var instructions: [Instruction] = []
    var commOps = 0
    let denseLayers: Int
    /// Open operations keyed by (dispatch side, micro-batch, MoE layer) awaiting their RECV.
    private var pending: [Int: Int32] = [:]

    init(denseLayers: Int) { self.denseLayers = denseLayers }

    mutating func add(_ kind: KernelKind, _ mb: MicroBatch, moe: Int) {
        add(kind, mb, layer: Int32(denseLayers + moe), moe: Int32(moe))
    }

    mutating func add(_ kind: KernelKind, _ mb: MicroBatch, layer: Int32, moe: Int32) {
        var op: Int32 = -1
        let key = (kind.isDispatchSide ? 1 : 0) | Int(mb.rawValue) << 1 | Int(moe) << 2
        if kind.sends {
            op = Int32(commOps)
            commOps += 1
            if !kind.receives { pending[key] = op }
        } else if kind.receives {
            op = pending.removeValue(forKey: key) ?? -1
        }
        instructions.append(Instruction(kind: kind, microBatch: mb, layer: layer, moeLayer: moe, stream: .compute, commOp: op))
    }
}
