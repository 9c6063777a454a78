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
    ///   - ownTokensA / ownTokens: the rank's tokens in micro-batch A and in all (attention, shared).
    ///   - receivedA / received: tokens received by the rank's experts in A and in all (MLP).
    public func computeDuration(
        _ kind: KernelKind, rank: Int, microBatch: MicroBatch, microBatches: Int,
        ownTokensA: Int, ownTokens: Int, receivedA: Int, received: Int
    ) -> SimTime {
        switch kind {
        case .attn0: return Self.share(costs.attn0[rank], microBatch: microBatch, microBatches: microBatches, partA: ownTokensA, total: ownTokens)
        case .attn1: return Self.share(costs.attn1[rank], microBatch: microBatch, microBatches: microBatches, partA: ownTokensA, total: ownTokens)
        case .shared: return Self.share(costs.shared[rank], microBatch: microBatch, microBatches: microBatches, partA: ownTokensA, total: ownTokens)
        case .mlp: return Self.share(costs.gemm[rank], microBatch: microBatch, microBatches: microBatches, partA: receivedA, total: received)
        case .dense: return costs.denseMLP[rank]
        default: return .zero
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
