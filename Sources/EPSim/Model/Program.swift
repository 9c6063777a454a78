/// The per-step program every rank runs, built from a ``ScheduleSpec`` and validated.
///
/// Durations differ per rank; the order does not (all ranks issue the same kernels, as
/// DeepEP requires of its collective operations).
public struct Program: Sendable {
    public var instructions: [Instruction]
    /// Instruction indices of each stream, in issue order (`streams[StreamKind.rawValue]`).
    public var streams: [[Int32]]
    /// Communication operations (dispatch, combine and count exchanges) per step.
    public var commOpsPerStep: Int
    public var microBatches: Int
    public var mode: CommunicationMode
    public var commSMs: Int
    /// Single-batch overlap of the down GEMM with comm-stream combine SENDs
    /// (``ScheduleSpec/overlapDownGEMM``; ``Instruction/releasedByDownGEMM`` says which).
    public var overlapDownGEMM = false

    /// Builds and validates the program of `spec` for `denseLayers` dense then `moeLayers`
    /// MoE layers.
    ///
    /// - Throws: ``ScheduleError`` naming the offending kernel when a kernel is missing or
    ///   repeated, comes before a kernel it depends on, the streams would wait on each
    ///   other, or (low-latency mode) DeepEP's two-buffer order would be broken.
    /// The most kernels a step may expand to (the body times the MoE layers, plus the rest):
    /// DeepSeek-V3's decode step is about 700; checked before any is built.
    public static let maxInstructions = 1_000_000

    public init(spec: ScheduleSpec, denseLayers: Int, moeLayers: Int) throws(ScheduleError) {
        let expanded = 3 * denseLayers + spec.prologue.count + spec.body.count * moeLayers + spec.epilogue.count
        guard expanded <= Self.maxInstructions else {
            throw ScheduleError(
                "the schedule expands to \(expanded) kernels per step (a body of \(spec.body.count) kernels x \(moeLayers) MoE layers, and the rest); at most \(Self.maxInstructions)")
        }
        microBatches = spec.microBatches
        mode = spec.mode
        commSMs = spec.commSMs
        var list: [Instruction] = []
        for l in 0..<denseLayers {
            for kind in [KernelKind.attn0, .attn1, .dense] {
                list.append(
                    Instruction(
                        kind: kind, microBatch: .a, layer: Int32(l), moeLayer: -1, stream: .compute,
                        commOp: -1, notifyOp: -1, crossStreamDependencies: []))
            }
        }
        func place(_ ref: KernelRef, layer: Int) throws(ScheduleError) {
            guard (0..<moeLayers).contains(layer) else { return }
            if ref.kind == .dense { throw ScheduleError("DENSE is not part of an MoE-layer schedule; dense layers come from model.dense_layers") }
            if ref.microBatch == .b && spec.microBatches == 1 {
                throw ScheduleError("\(ref) names micro-batch B, but the schedule has one micro-batch (set micro_batches: 2)")
            }
            if spec.mode == .normal && ref.kind.isCommunication && !(ref.kind == .dispatch || ref.kind == .combine) {
                throw ScheduleError("\(ref): normal-mode kernels have no receive hook; use the fused DISPATCH and COMBINE")
            }
            list.append(
                Instruction(
                    kind: ref.kind, microBatch: ref.microBatch, layer: Int32(denseLayers + layer), moeLayer: Int32(layer),
                    stream: ref.stream, commOp: -1, notifyOp: -1, crossStreamDependencies: []))
        }
        for ref in spec.prologue { try place(ref, layer: ref.layerOffset) }
        for l in 0..<moeLayers { for ref in spec.body { try place(ref, layer: l + ref.layerOffset) } }
        for ref in spec.epilogue { try place(ref, layer: moeLayers + ref.layerOffset) }

        let index = try Self.checkCompleteness(list, microBatches: spec.microBatches, moeLayers: moeLayers)
        try Self.addDependencies(&list, index: index, denseLayers: denseLayers)
        let ops = try Self.numberOperations(&list, index: index, mode: spec.mode)
        streams = StreamKind.allCases.map { s in list.indices.filter { list[$0].stream == s }.map(Int32.init) }
        if spec.mode == .lowLatency { try Self.checkLowLatencyOrder(list, microBatches: spec.microBatches, streams: streams) }
        try Self.checkNoCrossStreamDeadlock(list, streams: streams)
        overlapDownGEMM = spec.overlapDownGEMM
        if spec.overlapDownGEMM {
            for i in list.indices where list[i].kind == .sendCombine && list[i].stream == .comm {
                list[i].releasedByDownGEMM = list[i].crossStreamDependencies.first { list[Int($0)].kind == .mlp } ?? -1
            }
        }
        instructions = list
        commOpsPerStep = ops
    }

    /// Kernel groups: a fused kernel stands for both of its halves.
    enum Group: Int, CaseIterable {
        case attn0, attn1, shared, mlp, dispatchSend, dispatchRecv, combineSend, combineRecv
        var name: String { ["ATTN0", "ATTN1", "SHARED", "MLP", "SEND-D", "RECV-D", "SEND-C", "RECV-C"][rawValue] }
        static func of(_ kind: KernelKind) -> [Group] {
            switch kind {
            case .attn0: return [.attn0]
            case .attn1: return [.attn1]
            case .shared: return [.shared]
            case .mlp: return [.mlp]
            case .dense, .barrier: return []
            case .sendDispatch: return [.dispatchSend]
            case .recvDispatch: return [.dispatchRecv]
            case .dispatch: return [.dispatchSend, .dispatchRecv]
            case .sendCombine: return [.combineSend]
            case .recvCombine: return [.combineRecv]
            case .combine: return [.combineSend, .combineRecv]
            }
        }
    }

    struct Key: Hashable {
        var group: Group
        var microBatch: MicroBatch
        var layer: Int32
    }

    /// Every kernel of every micro-batch exactly once per MoE layer; returns where each is.
    static func checkCompleteness(_ list: [Instruction], microBatches: Int, moeLayers: Int) throws(ScheduleError) -> [Key: Int] {
        var index: [Key: Int] = [:]
        for (i, instr) in list.enumerated() where instr.moeLayer >= 0 {
            for g in Group.of(instr.kind) {
                let key = Key(group: g, microBatch: instr.microBatch, layer: instr.moeLayer)
                if index[key] != nil { throw ScheduleError("\(g.name)(\(instr.microBatch), layer \(instr.moeLayer)) appears twice in the step") }
                index[key] = i
            }
        }
        for l in 0..<moeLayers {
            for m in 0..<microBatches {
                for g in Group.allCases {
                    let mb = MicroBatch(rawValue: UInt8(m))!
                    if index[Key(group: g, microBatch: mb, layer: Int32(l))] == nil {
                        throw ScheduleError("\(g.name)(\(mb), layer \(l)) is missing: every kernel of every micro-batch must appear once per layer")
                    }
                }
            }
        }
        return index
    }

    /// The data each kernel consumes: its producers must run first, on its own stream by
    /// program order, on the other stream through a cross-stream dependency.
    static func addDependencies(_ list: inout [Instruction], index: [Key: Int], denseLayers: Int) throws(ScheduleError) {
        for i in list.indices where list[i].moeLayer >= 0 {
            let instr = list[i]
            let m = instr.microBatch
            let l = instr.moeLayer
            var needs: [Key] = []
            switch instr.kind {
            case .attn0:
                if l > 0 { needs = [Key(group: .combineRecv, microBatch: m, layer: l - 1), Key(group: .shared, microBatch: m, layer: l - 1)] }
            case .attn1: needs = [Key(group: .attn0, microBatch: m, layer: l)]
            case .shared, .sendDispatch, .dispatch: needs = [Key(group: .attn1, microBatch: m, layer: l)]
            case .recvDispatch: needs = [Key(group: .dispatchSend, microBatch: m, layer: l)]
            case .mlp: needs = [Key(group: .dispatchRecv, microBatch: m, layer: l)]
            case .sendCombine, .combine: needs = [Key(group: .mlp, microBatch: m, layer: l)]
            case .recvCombine: needs = [Key(group: .combineSend, microBatch: m, layer: l)]
            case .dense, .barrier: break
            }
            for need in needs {
                guard let p = index[need], p != i else { continue }
                if list[p].stream == instr.stream {
                    if p > i {
                        throw ScheduleError(
                            "\(instr.label) comes before \(list[p].label), which it depends on (\(instr.kind) needs the output of \(need.group.name))")
                    }
                } else {
                    list[i].crossStreamDependencies.append(Int32(p))
                }
            }
        }
    }

    /// Numbers operations in issue order; a RECV takes its SEND's number. Normal-mode
    /// dispatches get a count exchange first.
    static func numberOperations(_ list: inout [Instruction], index: [Key: Int], mode: CommunicationMode) throws(ScheduleError) -> Int {
        var next: Int32 = 0
        for i in list.indices where list[i].kind.sends || list[i].kind == .barrier {
            if mode == .normal && list[i].kind == .dispatch {
                list[i].notifyOp = next
                next += 1
            }
            list[i].commOp = next
            next += 1
        }
        for i in list.indices where list[i].kind == .recvDispatch || list[i].kind == .recvCombine {
            let group: Group = list[i].kind == .recvDispatch ? .dispatchSend : .combineSend
            let send = index[Key(group: group, microBatch: list[i].microBatch, layer: list[i].moeLayer)]!
            list[i].commOp = list[send].commOp
        }
        return Int(next)
    }

    /// DeepEP low-latency: two buffers, no acknowledgement. Operations run D(A), C(A), D(B),
    /// C(B) per layer, all on one stream, and each SEND comes after the previous RECV.
    static func checkLowLatencyOrder(_ list: [Instruction], microBatches: Int, streams: [[Int32]]) throws(ScheduleError) {
        let comm = list.indices.filter { list[$0].kind.isCommunication }
        // A fused kernel is one cooperative launch over every SM (DeepEP has no SM control for
        // its low-latency kernels); only hook-mode halves may run beside compute (SBO).
        if let fused = comm.first(where: { list[$0].stream == .comm && (list[$0].kind == .dispatch || list[$0].kind == .combine) }) {
            throw ScheduleError(
                "\(list[fused].label) is on the comm stream: a fused low-latency kernel holds every SM, so it runs on the compute stream; put hook-mode halves (SEND-D, RECV-D, SEND-C, RECV-C) on the comm stream to overlap them with compute"
            )
        }
        let sends = comm.filter { list[$0].kind.sends }
        var expected: [(dispatch: Bool, mb: MicroBatch, layer: Int32)] = []
        let layers = Set(sends.map { list[$0].moeLayer }).sorted()
        for l in layers {
            for m in 0..<microBatches {
                let mb = MicroBatch(rawValue: UInt8(m))!
                expected.append((true, mb, l))
                expected.append((false, mb, l))
            }
        }
        for (position, i) in sends.enumerated() {
            let e = expected[position]
            let s = list[i]
            if s.kind.isDispatchSide != e.dispatch || s.microBatch != e.mb || s.moeLayer != e.layer {
                let want = "\(e.dispatch ? "SEND-D" : "SEND-C")(\(e.mb), layer \(e.layer))"
                throw ScheduleError(
                    "\(s.label) is issued where \(want) must come: low-latency operations must run D(A), C(A), D(B), C(B) in every layer (DeepEP keeps two buffers and sends no acknowledgement)"
                )
            }
        }
        // Each operation's SEND must follow the previous operation's RECV: on one stream, later
        // in it; across streams, through a chain of stream order and cross-stream dependencies
        // (a vector clock per kernel: how many kernels of each stream surely ended before it).
        let clocks = happensBefore(list, streams: streams)
        var position = [Int](repeating: 0, count: list.count)
        for stream in streams { for (p, i) in stream.enumerated() { position[Int(i)] = p } }
        var receivedAt: [Int32: Int] = [:]
        for i in comm where list[i].kind.receives { receivedAt[list[i].commOp] = i }
        for i in comm where list[i].kind.sends && list[i].commOp > 0 {
            guard let r = receivedAt[list[i].commOp - 1] else { continue }
            let before = r == i ? false : position[r] < clocks[i][Int(list[r].stream.rawValue)]
            guard !before else { continue }
            throw ScheduleError(
                "\(list[i].label) is issued before \(list[r].label) has finished: it would overwrite a receive buffer that may still be unread (DeepEP keeps two buffers and sends no acknowledgement)"
            )
        }
    }

    /// For each kernel, how many kernels of each stream have surely ended when it starts
    /// (those before it on its stream, its cross-stream producers and, transitively, theirs),
    /// in the order the streams can run; kernels a deadlock leaves unreached get zeros (the
    /// deadlock check reports them).
    static func happensBefore(_ list: [Instruction], streams: [[Int32]]) -> [[Int]] {
        var clocks = [[Int]](repeating: [0, 0], count: list.count)
        var done = [Bool](repeating: false, count: list.count)
        var pc = [Int](repeating: 0, count: streams.count)
        var progressed = true
        while progressed {
            progressed = false
            for s in streams.indices {
                while pc[s] < streams[s].count {
                    let i = Int(streams[s][pc[s]])
                    guard list[i].crossStreamDependencies.allSatisfy({ done[Int($0)] }) else { break }
                    var c = [0, 0]
                    c[s] = pc[s]
                    if pc[s] > 0 {
                        let prev = clocks[Int(streams[s][pc[s] - 1])]
                        c = [max(c[0], prev[0]), max(c[1], prev[1])]
                    }
                    for d in list[i].crossStreamDependencies {
                        let other = Int(list[Int(d)].stream.rawValue)
                        var dc = clocks[Int(d)]
                        dc[other] += 1  // the producer itself
                        c = [max(c[0], dc[0]), max(c[1], dc[1])]
                    }
                    clocks[i] = c
                    done[i] = true
                    pc[s] += 1
                    progressed = true
                }
            }
        }
        return clocks
    }

    /// Abstract execution of the two streams: each advances while its next kernel's
    /// cross-stream producers have run; if neither can, the schedule would hang.
    static func checkNoCrossStreamDeadlock(_ list: [Instruction], streams: [[Int32]]) throws(ScheduleError) {
        var done = [Bool](repeating: false, count: list.count)
        var pc = [Int](repeating: 0, count: streams.count)
        while true {
            var progressed = false
            for s in streams.indices {
                while pc[s] < streams[s].count {
                    let i = Int(streams[s][pc[s]])
                    guard list[i].crossStreamDependencies.allSatisfy({ done[Int($0)] }) else { break }
                    done[i] = true
                    pc[s] += 1
                    progressed = true
                }
            }
            if !progressed { break }
        }
        for s in streams.indices where pc[s] < streams[s].count {
            let i = Int(streams[s][pc[s]])
            let waitsFor = list[i].crossStreamDependencies.first { !done[Int($0)] }!
            throw ScheduleError(
                "the streams would wait on each other: \(list[i].label) on the \(list[i].stream) stream needs \(list[Int(waitsFor)].label), which can never run first"
            )
        }
    }
}
