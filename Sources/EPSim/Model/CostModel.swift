import EventCore

/// What a compute kernel works on, as the cost model needs it.
public struct ComputeWork: Sendable {
    /// The rank's tokens in micro-batch A, in all, and in this kernel's micro-batch.
    public var tokensA = 0
    public var tokensTotal = 0
    public var tokens = 0
    /// MLP: tokens received by the rank's experts in A, in all, in this micro-batch, and per
    /// local expert in this micro-batch (`masked_m`).
    public var receivedA = 0
    public var receivedTotal = 0
    public var received = 0
    public var expertTokens: [Int32] = []
    /// MLP under ``ExpertGEMMLayout/padded``: the rows the GEMM computes for every local
    /// expert (`ranks x C`); nil: each expert's received rows, padded to 64.
    public var capacityRows: Int?
    /// The rows an `MLP` computes, for a measured table: every local expert's buffer slice
    /// under ``ExpertGEMMLayout/padded``, else the tokens received.
    public var mlpRows: Int { capacityRows.map { $0 * expertTokens.count } ?? received }
    /// Context length of the rank's requests.
    public var kvLength = 0
    /// Decode: the KV-cache tokens of all the kernel's requests when their lengths differ
    /// (``StepPlan/requestKV``); nil: `kvLength` for each request.
    public var kvTokens: Int?
    /// The requests behind `tokens` (`tokensTotal` for a whole-batch kernel): fewer than the
    /// tokens with multi-token prediction, where each request's `1 + d` query tokens read its
    /// KV cache once (FlashMLA's decode kernel takes `s_q` query tokens per request). nil:
    /// one token per request.
    public var requests: Int?
    /// A dense layer's kernels always run on the whole batch.
    public var wholeBatch = false

    public init() {}
}

/// Turns a kernel and its workload into a duration.
///
/// Compute kernels: fixed (per rank, whole batch split by tokens, or per micro-batch),
/// roofline (from ``Hardware`` and ``Architecture``) or a measured table. Communication
/// kernels: SEND = fixed + per message x data messages; RECV copy or reduce = fixed +
/// bytes / copy bandwidth.
public struct CostModel: Sendable {
    public let costs: CostConfig
    public let model: MoEModel
    public let phase: InferencePhase

    public init(costs: CostConfig, model: MoEModel, phase: InferencePhase = .decode) {
        self.costs = costs
        self.model = model
        self.phase = phase
    }

    /// A fixed full-batch duration's share for one micro-batch.
    ///
    /// With two micro-batches, A gets `floor(base * part / total)` picoseconds and B the
    /// rest, so the two halves always add up to the full-batch duration exactly; with no
    /// tokens at all each gets half. `part` is micro-batch A's tokens.
    public static func share(_ base: SimTime, microBatch: MicroBatch, microBatches: Int, partA: Int, total: Int) -> SimTime {
        guard microBatches == 2 else { return base }
        let a: Int64
        if total > 0 {
            // Exact integer floor(base * partA / total), with no overflow.
            a = Int64(total).dividingFullWidth(base.picos.multipliedFullWidth(by: Int64(partA))).quotient
        } else {
            a = base.picos / 2
        }
        return microBatch == .a ? SimTime(picos: a) : SimTime(picos: base.picos - a)
    }

    /// Duration of a compute kernel (`ATTN0`, `ATTN1`, `SHARED`, `MLP`, `DENSE`).
    public func computeDuration(_ kind: KernelKind, rank id: RankID, microBatch: MicroBatch, microBatches: Int, work: ComputeWork) -> SimTime {
        let rank = id.index
        let cost: ComputeCost
        switch kind {
        case .attn0: cost = costs.attn0
        case .attn1: cost = costs.attn1
        case .shared: cost = costs.shared
        case .mlp: cost = costs.gemm
        case .dense: cost = costs.denseMLP
        default: return .zero
        }
        let isMLP = kind == .mlp
        switch cost {
        case .wholeBatch(let d):
            if work.wholeBatch || microBatches == 1 { return d[rank] }
            return Self.share(
                d[rank], microBatch: microBatch, microBatches: microBatches,
                partA: isMLP ? work.receivedA : work.tokensA, total: isMLP ? work.receivedTotal : work.tokensTotal)
        case .perMicroBatch(let a, let b):
            if work.wholeBatch || microBatches == 1 { return a[rank] + b[rank] }
            return microBatch == .a ? a[rank] : b[rank]
        case .table(let points):
            return SimTime(micros: Self.interpolate(points, at: Double(isMLP ? work.mlpRows : work.tokens)))
        case .roofline:
            return roofline(kind, work: work)
        }
    }

    /// Linear interpolation in measured points; beyond the ends, the end segment's slope
    /// (never below zero); a single point is a constant.
    public static func interpolate(_ points: [MeasuredPoint], at x: Double) -> Double {
        guard let first = points.first else { return 0 }
        guard points.count > 1 else { return first.micros }
        var i = 1
        while i < points.count - 1 && points[i].tokens < x { i += 1 }
        let (a, b) = x <= first.tokens ? (points[0], points[1]) : (points[i - 1], points[i])
        let t = (x - a.tokens) / (b.tokens - a.tokens)
        return max(0, a.micros + t * (b.micros - a.micros))
    }

    // MARK: Roofline

    /// FLOPs and bytes of a kernel for the roofline, and of the FLOPs those of core attention
    /// (`core`: run at the attention precision's peak, the rest at FP8's).
    public func rooflineWork(_ kind: KernelKind, work: ComputeWork) -> (flops: Double, bytes: Double, core: Double) {
        let a = model.architecture
        let h = Double(a.hidden)
        let wb = a.weightBytes
        let t = Double(work.wholeBatch ? work.tokensTotal : work.tokens)
        let kv = Double(work.kvLength)
        // The requests whose KV caches decode attention reads: once per request, whatever
        // its query tokens (multi-token prediction verifies 1 + d tokens against one cache).
        let cachedRequests = Double(work.requests ?? Int(t))
        // Prefill attends, per token, to half its prompt on average (causal); decode to all of it.
        let context = phase == .decode ? kv : kv / 2
        // Decode: the KV tokens all the requests read, and the query tokens each brings;
        // `t x context` summed over requests is `queries x cachedKV` (equal to it when every
        // request has `kvLength`).
        let cachedKV = work.kvTokens.map(Double.init) ?? cachedRequests * kv
        let queries = cachedRequests > 0 ? t / cachedRequests : 0
        let attended = phase == .decode ? queries * cachedKV : t * context
        switch kind {
        case .attn0:
            let params: Double
            switch a.attention {
            case let .mla(heads, qRank, kvRank, nope, rope, _):
                let absorbedKeys = phase == .decode ? Double(kvRank * heads * nope) : 0
                params = h * Double(qRank) + Double(qRank * heads * (nope + rope)) + h * Double(kvRank + rope) + absorbedKeys
            case let .gqa(qHeads, kvHeads, headDim):
                params = h * Double((qHeads + 2 * kvHeads) * headDim)
            }
            return (2 * t * params, params * wb + t * h * 2, 0)
        case .attn1:
            let gate = h * Double(a.routedExperts)
            switch a.attention {
            case let .mla(heads, _, kvRank, nope, rope, vDim):
                let out = Double(heads * vDim) * h + (phase == .decode ? Double(kvRank * heads * vDim) : Double(kvRank * heads * (nope + vDim)))
                let core: Double
                if phase == .decode {
                    core = 2 * attended * Double(heads * (kvRank + rope + kvRank))
                } else {
                    core = 2 * attended * Double(heads * (nope + rope + vDim))
                }
                let cache = phase == .decode ? cachedKV * Double(kvRank + rope) * a.kvBytes : t * Double(kvRank + rope) * a.kvBytes
                return (core + 2 * t * (out + gate), cache + out * wb + gate * 2 + t * h * 2, core)
            case let .gqa(qHeads, kvHeads, headDim):
                let out = Double(qHeads * headDim) * h
                let core = 2 * attended * Double(qHeads * headDim * 2)
                let cache = phase == .decode ? cachedKV * Double(2 * kvHeads * headDim) * a.kvBytes : t * Double(2 * kvHeads * headDim) * a.kvBytes
                return (core + 2 * t * (out + gate), cache + out * wb + gate * 2 + t * h * 2, core)
            }
        case .shared:
            guard a.sharedExperts > 0 else { return (0, 0, 0) }
            let params = Double(a.sharedExperts) * 3 * h * Double(a.moeIntermediate)
            return (2 * t * params, params * wb + t * h * 3, 0)
        case .dense:
            let params = 3 * h * Double(a.denseIntermediate)
            return (2 * t * params, params * wb + t * h * 3, 0)
        case .mlp:
            let perExpert = 3 * h * Double(a.moeIntermediate)
            var flops = 0.0
            var bytes = 0.0
            if let rows = work.capacityRows.map(Double.init) {
                // A GEMM over the whole packed buffer: every row of every local expert's slice.
                let experts = Double(work.expertTokens.count)
                return (experts * 2 * rows * perExpert, experts * (perExpert * wb + rows * h * 3), 0)
            }
            for m in work.expertTokens where m > 0 {
                // DeepGEMM's masked grouped GEMM pads each expert's rows to the 64-row tile.
                let padded = Double((Int(m) + 63) / 64 * 64)
                flops += 2 * padded * perExpert
                bytes += perExpert * wb + Double(m) * h * 3
            }
            return (flops, bytes, 0)
        default:
            return (0, 0, 0)
        }
    }

    /// `overhead + max(FLOPs / (peak x efficiency), bytes / (HBM x efficiency))`: FP8 peak,
    /// but core attention's FLOPs at the peak of ``Architecture/attentionPrecision`` (BF16 is
    /// half FP8's on Hopper); for `MLP` on hardware with a measured grouped-FFN model, that
    /// model instead.
    public func roofline(_ kind: KernelKind, work: ComputeWork) -> SimTime {
        let hw = costs.hardware
        let (flops, bytes, core) = rooflineWork(kind, work: work)
        if flops == 0 && bytes == 0 { return .zero }
        if kind == .mlp && hw.expertFFNStreamGBps > 0 {
            // Measured grouped FFN (Hardware.expertFFN*).
            return SimTime(micros: hw.expertFFNFixedMicros + max(flops / (hw.expertFFNTFLOPS * 1e6), bytes / (hw.expertFFNStreamGBps * 1e3)))
        }
        if let micros = measuredMicros(kind, work: work) { return SimTime(micros: micros) }
        let corePeak = model.architecture.attentionPrecision == .bf16 ? hw.peakBF16TFLOPS : hw.peakFP8TFLOPS
        let computeSeconds =
            core == 0 || corePeak == hw.peakFP8TFLOPS
            ? flops / (hw.peakFP8TFLOPS * 1e12 * hw.computeEfficiency)
            : ((flops - core) / hw.peakFP8TFLOPS + core / corePeak) / (1e12 * hw.computeEfficiency)
        let memorySeconds = bytes / (hw.hbmGBps * 1e9 * hw.memoryEfficiency)
        return SimTime(micros: hw.kernelOverheadMicros + max(computeSeconds, memorySeconds) * 1e6)
    }

    /// A compute kernel from the hardware's measured production kernels (``MeasuredCompute``),
    /// µs; nil where none applies (no measured model for the family, prefill or GQA
    /// attention, BF16 weights), and the roofline prices it.
    public func measuredMicros(_ kind: KernelKind, work: ComputeWork) -> Double? {
        let hw = costs.hardware
        let m = hw.measured
        guard m.isPresent else { return nil }
        let a = model.architecture
        let h = a.hidden
        let t = work.wholeBatch ? work.tokensTotal : work.tokens
        // SiLU-and-mul with FP8 quantisation: measured, or (`activation_stream_gbps: 0`) the
        // generic roofline's overhead plus its bytes at HBM x memory efficiency.
        func activation(rows: [Int], intermediate: Int) -> Double {
            if m.activation.isFitted { return m.activationMicros(rows: rows, intermediate: intermediate, on: hw) }
            let bytes = Double(rows.reduce(0, +)) * Double(intermediate * 5 + intermediate / 128 * 4)
            return hw.kernelOverheadMicros + bytes / (hw.hbmGBps * hw.memoryEfficiency * 1e3)
        }
        func ffn(rows: [Int], intermediate: Int) -> Double {
            m.expertGEMMMicros(rows: rows, n: 2 * intermediate, k: h, on: hw) + activation(rows: rows, intermediate: intermediate)
                + m.expertGEMMMicros(rows: rows, n: h, k: intermediate, on: hw)
        }
        func denseFFN(intermediate: Int) -> Double {
            m.projectionMicros(tokens: t, n: 2 * intermediate, k: h, on: hw) + activation(rows: [t], intermediate: intermediate)
                + m.projectionMicros(tokens: t, n: h, k: intermediate, on: hw)
        }
        switch kind {
        case .mlp:
            guard m.expertGEMM.isFitted, a.weightBytes == 1 else { return nil }
            let rows = work.capacityRows.map { Array(repeating: $0, count: work.expertTokens.count) } ?? work.expertTokens.map { Int($0) }
            guard rows.contains(where: { $0 > 0 }) else { return 0 }
            return ffn(rows: rows, intermediate: a.moeIntermediate)
        case .shared:
            guard m.projection.isFitted, a.weightBytes == 1 else { return nil }
            guard a.sharedExperts > 0, t > 0 else { return 0 }
            return denseFFN(intermediate: a.sharedExperts * a.moeIntermediate)
        case .dense:
            guard m.projection.isFitted, a.weightBytes == 1 else { return nil }
            guard t > 0 else { return 0 }
            return denseFFN(intermediate: a.denseIntermediate)
        case .attn0, .attn1:
            guard phase == .decode, case let .mla(heads, qRank, kvRank, nope, rope, vDim) = a.attention,
                m.projection.isFitted, m.absorbedBMM.isFitted, m.attentionCore.isFitted, a.weightBytes == 1
            else { return nil }
            guard t > 0 else { return 0 }
            if kind == .attn0 {
                return m.projectionMicros(tokens: t, n: qRank + kvRank + rope, k: h, on: hw)
                    + m.projectionMicros(tokens: t, n: heads * (nope + rope), k: qRank, on: hw)
                    + m.absorbedMicros(heads: heads, tokens: t, n: kvRank, k: nope, on: hw)
            }
            let requests = max(1, work.requests ?? t)
            let kv = work.kvTokens.map(Double.init) ?? Double(requests) * Double(work.kvLength)
            return m.attentionCoreMicros(
                requests: requests, queryTokens: max(1, t / requests), kvTokens: kv, heads: heads, dQK: kvRank + rope, dV: kvRank,
                kvBytes: a.kvBytes, fp8Math: a.attentionPrecision == .fp8, on: hw)
                + m.absorbedMicros(heads: heads, tokens: t, n: vDim, k: kvRank, on: hw)
                + m.projectionMicros(tokens: t, n: h, k: heads * vDim, on: hw)
                + m.projectionMicros(tokens: t, n: a.routedExperts, k: h, weightBytes: 2, on: hw)
        default:
            return nil
        }
    }

    /// Duration of a SEND (or the SEND part of a fused kernel) posting `messages` data messages:
    /// `fixed + max(per_message x messages + stores, pairBytes / pair_gbps)`. `stores` is the
    /// time the kernel's own SMs spend writing payload to NVLink peers and its own memory,
    /// which the network model decides (``NetworkModel/sendStoreTime(peerBytes:selfBytes:)``:
    /// zero on a network that carries it as flows); `pairBytes` is the largest (peer, local expert) pair of a
    /// low-latency combine SEND, which one warp group sends alone (zero elsewhere).
    public func sendDuration(dispatch: Bool, rank: RankID, messages: Int, stores: SimTime = .zero, pairBytes: Int64 = 0) -> SimTime {
        let c = dispatch ? costs.dispatchSend : costs.combineSend
        let bulk = c.perMessage.times(Int64(messages)) + stores
        return c.fixed[rank.index] + max(bulk, SimTime.transfer(bytes: pairBytes, gigabytesPerSecond: c.pairGBps))
    }

    /// Time a RECV needs after its last arrival: `fixed + max(bytes / copy_gbps, pairBytes /
    /// pair_gbps)`, copying the received bytes (dispatch) or reducing the combine rows
    /// (combine); `pairBytes` is the largest (source, local expert) pair of a low-latency
    /// dispatch RECV, copied by one warp group alone (zero elsewhere).
    public func recvDuration(dispatch: Bool, rank: RankID, bytes: Int64, pairBytes: Int64 = 0) -> SimTime {
        let c = dispatch ? costs.dispatchRecv : costs.combineRecv
        return c.fixed[rank.index]
            + max(
                SimTime.transfer(bytes: bytes, gigabytesPerSecond: c.copyGBps),
                SimTime.transfer(bytes: pairBytes, gigabytesPerSecond: c.pairGBps))
    }
}
