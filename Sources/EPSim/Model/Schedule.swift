/// How the communication kernels of a schedule behave.
public enum CommunicationMode: String, Sendable, CaseIterable {
    /// DeepEP low-latency kernels: per-selection messages, no synchronisation, two buffers
    /// (operations must run D(A), C(A), D(B), C(B), each SEND after the previous RECV).
    case lowLatency = "low-latency"
    /// DeepEP normal (high-throughput) kernels: one message per (token, destination rank),
    /// and every dispatch opens with a count exchange among all ranks, a real
    /// synchronisation point.
    case normal
}

/// One entry of a schedule: a kernel kind, its micro-batch, its layer offset and its stream.
///
/// Written `KIND`, `KIND(MB)`, `KIND(MB+N)` or `KIND(MB,+N)`, optionally followed by
/// `@comm`, e.g. `SEND-D(A+1)` or `COMBINE(A,-1)@comm`.
public struct KernelRef: Sendable, Equatable, CustomStringConvertible {
    public var kind: KernelKind
    public var microBatch: MicroBatch
    public var layerOffset: Int
    public var stream: StreamKind

    public init(_ kind: KernelKind, _ mb: MicroBatch = .a, _ offset: Int = 0, _ stream: StreamKind = .compute) {
        self.kind = kind
        self.microBatch = mb
        self.layerOffset = offset
        self.stream = stream
    }

    public var description: String {
        var s = "\(kind)(\(microBatch)"
        if layerOffset != 0 { s += layerOffset > 0 ? ",+\(layerOffset)" : ",\(layerOffset)" }
        s += ")"
        if stream == .comm { s += "@comm" }
        return s
    }

    /// Parses `KIND(MB,+N)@stream`; returns a message saying what was expected on failure.
    public static func parse(_ text: String) -> Result<KernelRef, ScheduleError> {
        var body = Substring(text.trimmingCharacters(in: .whitespaces))
        var stream = StreamKind.compute
        if let at = body.firstIndex(of: "@") {
            switch body[body.index(after: at)...] {
            case "comm": stream = .comm
            case "compute": stream = .compute
            default: return .failure(ScheduleError("unknown stream in \"\(text)\"; expected @compute or @comm"))
            }
            body = body[..<at]
        }
        var args: [Substring] = []
        if let open = body.firstIndex(of: "(") {
            guard body.last == ")" else {
                return .failure(
                    ScheduleError(
                        "unbalanced parenthesis in \"\(text)\" (inside a YAML [flow, list] a comma splits items: write ATTN0(A+1), quote the item, or give the list as one string)"
                    ))
            }
            var inner = String(body[body.index(after: open)..<body.index(before: body.endIndex)])
            // `A+1` is `A,+1`: the comma-free form survives YAML flow lists.
            if let sign = inner.firstIndex(where: { $0 == "+" || $0 == "-" }), !inner.contains(",") {
                inner.insert(",", at: sign)
            }
            args = inner.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces)[...] }
            body = body[..<open]
        }
        guard let kind = KernelKind(name: String(body)) else {
            let names = KernelKind.allCases.map(\.description).joined(separator: ", ")
            return .failure(ScheduleError("unknown kernel \"\(body)\" in \"\(text)\"; expected one of \(names)"))
        }
        var mb = MicroBatch.a
        var offset = 0
        if args.count > 2 { return .failure(ScheduleError("too many arguments in \"\(text)\"; expected KIND(MB) or KIND(MB,+N)")) }
        if let m = args.first {
            switch m {
            case "A": mb = .a
            case "B": mb = .b
            default: return .failure(ScheduleError("unknown micro-batch \"\(m)\" in \"\(text)\"; expected A or B"))
            }
        }
        if args.count == 2 {
            guard let o = Int(args[1].replacingOccurrences(of: "+", with: "")), abs(o) <= 4 else {
                return .failure(ScheduleError("bad layer offset \"\(args[1])\" in \"\(text)\"; expected an integer from -4 to +4"))
            }
            offset = o
        }
        return .success(KernelRef(kind, mb, offset, stream))
    }
}

/// A schedule refused as written or as built: the message names the offending kernel.
public struct ScheduleError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// Where in the schedule's lists the problem is, when it is one entry (`body[3]`).
    public var entry: String?
    public init(_ message: String, entry: String? = nil) {
        self.message = message
        self.entry = entry
    }
    public var description: String { message }
}

/// A schedule as data: the order in which each rank issues the kernels of a step.
///
/// The step is `prologue`, then `body` once per MoE layer `l` (an entry with offset `o`
/// belongs to layer `l + o` and is left out when that layer does not exist), then
/// `epilogue` (offsets relative to the layer after the last one). Prologue offsets count
/// from layer 0. Dense layers, if any, run first as `ATTN0 ATTN1 DENSE` on the whole batch.
public struct ScheduleSpec: Sendable, Equatable {
    public var name: String
    public var mode: CommunicationMode
    public var microBatches: Int
    /// SMs a kernel on the comm stream holds while resident (of `cluster.sms_per_gpu`).
    public var commSMs: Int
    public var prologue: [KernelRef]
    public var body: [KernelRef]
    public var epilogue: [KernelRef]
    /// Single-batch overlap of the down GEMM with the combine SEND (DeepEP pull request 390,
    /// DeepGEMM pull request 183, SGLang's `single_batch_overlap.py`): a combine SEND on the
    /// comm stream starts when its `MLP`'s down projection starts (the last
    /// ``downProjectionShare`` of the kernel), not when the `MLP` ends, and sends each 64-row
    /// block as the GEMM signals it; false: the SEND waits for the whole `MLP`.
    public var overlapDownGEMM: Bool = false

    /// The down projection's share of an `MLP`'s work: `H x I` of the expert's `3 H x I`
    /// weights (gate and up are the other two): its FLOPs and weight bytes alike.
    public static let downProjectionShare = 1.0 / 3.0

    public init(
        name: String, mode: CommunicationMode = .lowLatency, microBatches: Int, commSMs: Int = 0,
        prologue: [KernelRef] = [], body: [KernelRef], epilogue: [KernelRef] = [], overlapDownGEMM: Bool = false
    ) {
        self.overlapDownGEMM = overlapDownGEMM
        self.name = name
        self.mode = mode
        self.microBatches = microBatches
        self.commSMs = commSMs
        self.prologue = prologue
        self.body = body
        self.epilogue = epilogue
    }

    /// The preset names `epsim run --schedule` and the `schedule:` key accept.
    public static let presetNames = ["none", "deepseek-decode", "deepseek-prefill", "sbo"]

    /// A named preset, or nil.
    public static func preset(_ name: String) -> ScheduleSpec? {
        func refs(_ text: String) -> [KernelRef] {
            text.split(separator: " ").map { try! KernelRef.parse(String($0)).get() }
        }
        switch name {
        case "none":
            return ScheduleSpec(name: name, microBatches: 1, body: refs("ATTN0 ATTN1 SHARED DISPATCH MLP COMBINE"))
        case "deepseek-decode":
            return ScheduleSpec(
                name: name, microBatches: 2, prologue: refs("ATTN0(A) ATTN1(A) SEND-D(A)"),
                body: refs(
                    """
                    SHARED(A) ATTN0(B) RECV-D(A) MLP(A) SEND-C(A) ATTN1(B) \
                    RECV-C(A) SEND-D(B) SHARED(B) ATTN0(A,+1) RECV-D(B) MLP(B) \
                    SEND-C(B) ATTN1(A,+1) RECV-C(B) SEND-D(A,+1)
                    """))
        case "deepseek-prefill":
            return ScheduleSpec(
                name: name, mode: .normal, microBatches: 2, commSMs: 24,
                body: refs(
                    """
                    ATTN0(B) ATTN1(B) COMBINE(A,-1)@comm SHARED(A,-1) ATTN0(A) ATTN1(A) \
                    DISPATCH(B)@comm DISPATCH(A)@comm MLP(B) MLP(A) SHARED(B) COMBINE(B)@comm
                    """),
                epilogue: refs("COMBINE(A,-1)@comm SHARED(A,-1)"))
        case "sbo":
            // Single-batch overlap as SGLang runs it on Hopper (single_batch_overlap.py): the
            // shared experts beside the dispatch RECV, the combine SEND on a second stream with
            // 3 SMs beside the down GEMM on the other 129, signalled per 64-row block.
            return ScheduleSpec(
                name: name, microBatches: 1, commSMs: 3,
                body: refs("ATTN0 ATTN1 SEND-D RECV-D@comm SHARED MLP SEND-C@comm RECV-C"), overlapDownGEMM: true)
        default:
            return nil
        }
    }
}
