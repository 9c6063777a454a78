import EventCore

/// Turns a kernel and its workload into a duration.
///
/// First level (this file): fixed per-rank durations for compute kernels, given for the
/// rank's whole batch; SEND = fixed + per message x data messages; RECV copy or reduce =
/// fixed + bytes / copy bandwidth. Later levels (roofline, measured tables) plug in here,
/// behind the same three questions the engine asks.
public struct CostModel: Sendable {
    public let costs: CostConfig
    public let model: MoEModel

    public init(costs: CostConfig, model: MoEModel) {
        self.costs = costs
        self.model = model
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
    ///
    /// - Parameters:
    ///   - partA / total: micro-batch A's share of the work and the whole: own tokens for
    ///     attention and shared experts, tokens received by the rank's experts for MLP.
    ///   - wholeBatch: a dense layer's kernels always run on the whole batch.
    public func computeDuration(
        _ kind: KernelKind, rank: Int, microBatch: MicroBatch, microBatches: Int,
        partA: Int, total: Int, wholeBatch: Bool = false
    ) -> SimTime {
        let cost: ComputeCost
        switch kind {
        case .attn0: cost = costs.attn0
        case .attn1: cost = costs.attn1
        case .shared: cost = costs.shared
        case .mlp: cost = costs.gemm
        case .dense: return costs.denseMLP[rank]
        default: return .zero
        }
        if wholeBatch || microBatches == 1 { return cost.whole(rank) }
        switch cost {
        case .wholeBatch(let d): return Self.share(d[rank], microBatch: microBatch, microBatches: microBatches, partA: partA, total: total)
        case .perMicroBatch(let a, let b): return microBatch == .a ? a[rank] : b[rank]
        }
    }

    /// Duration of a SEND (or the SEND part of a fused kernel) posting `messages` data messages.
    public func sendDuration(dispatch: Bool, rank: Int, messages: Int) -> SimTime {
        let c = dispatch ? costs.dispatchSend : costs.combineSend
        return c.fixed[rank] + SimTime(picos: c.perMessage.picos * Int64(messages))
    }

    /// Time a RECV needs after its last arrival: copy the received bytes (dispatch) or reduce
    /// `rows` combine rows (combine).
    public func recvDuration(dispatch: Bool, rank: Int, bytes: Int64) -> SimTime {
        let c = dispatch ? costs.dispatchRecv : costs.combineRecv
        return c.fixed[rank] + SimTime.transfer(bytes: bytes, gigabytesPerSecond: c.copyGBps)
    }
}
