import EventCore

/// Why the last message a RECV waited for came late.
public enum BlameReason: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    /// The blocking rank began its SEND after the receiver began its own.
    case startedLate = 1
    /// The blocking rank's SEND took longer (more messages, more NVLink bytes).
    case sentMore = 2
    /// The message spent longer in flight: a busy port, a long transfer, latency.
    case network = 3

    public var description: String {
        switch self {
        case .none: return ""
        case .startedLate: return "started late"
        case .sentMore: return "sent more"
        case .network: return "network"
        }
    }

    public init?(name: String) {
        guard let r = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = r
    }
}

/// A RECV's wait split between the blocking rank and the network.
public struct WaitSplit: Sendable, Equatable {
    public var blocker: Int32
    /// Wait the blocking rank caused by starting its SEND late or sending longer.
    public var byRank: SimTime
    /// The rest: time the message spent in flight beyond the receiver's own SEND.
    public var byNetwork: SimTime
    public var reason: BlameReason
}

/// Finds, for every waiting RECV, the SEND of the rank that arrived last, and says why.
///
/// With `K_d` the receiver's own SEND of the same operation and `S` the blocker's:
/// `started late = max(0, S.start - K_d.start)`, `sent more = max(0, (S.sendEnd - S.start) -
/// (K_d.sendEnd - K_d.start))`; their sum (at most the wait) is the blocking rank's share,
/// the rest the network's. The reason is the largest of the three.
public struct BlameIndex: Sendable {
    struct Key: Hashable {
        var rank: Int32
        var step: Int32
        var layer: Int32
        var microBatch: MicroBatch
        var dispatch: Bool
    }

    let senders: [Key: Int]
    let kernels: [KernelRecord]

    public init(_ kernels: [KernelRecord]) {
        self.kernels = kernels
        var s: [Key: Int] = [:]
        for (i, k) in kernels.enumerated() where k.kind.sends {
            s[Key(rank: k.rank, step: k.step, layer: k.layer, microBatch: k.microBatch, dispatch: k.kind.isDispatchSide)] = i
        }
        senders = s
    }

    /// The SEND kernel of `rank` for the operation `k` receives.
    public func sender(of k: KernelRecord, on rank: Int32) -> KernelRecord? {
        senderIndex(of: k, on: rank).map { kernels[$0] }
    }

    /// Its index in the kernels.
    public func senderIndex(of k: KernelRecord, on rank: Int32) -> Int? {
        senders[Key(rank: rank, step: k.step, layer: k.layer, microBatch: k.microBatch, dispatch: k.kind.isDispatchSide)]
    }

    /// The split of `k`'s wait, or nil when it did not wait.
    public func split(_ k: KernelRecord) -> WaitSplit? {
        guard k.wait > .zero, k.blocker >= 0 else { return nil }
        guard let s = sender(of: k, on: k.blocker), let own = sender(of: k, on: k.rank), let sEnd = s.sendEnd, let ownEnd = own.sendEnd else {
            return WaitSplit(blocker: k.blocker, byRank: .zero, byNetwork: k.wait, reason: .network)
        }
        let late = max(.zero, s.start - own.start)
        let more = max(.zero, (sEnd - s.start) - (ownEnd - own.start))
        let byRank = min(k.wait, late + more)
        let byNetwork = k.wait - byRank
        let reason: BlameReason = late >= more && late >= byNetwork ? .startedLate : (more >= byNetwork ? .sentMore : .network)
        return WaitSplit(blocker: k.blocker, byRank: byRank, byNetwork: byNetwork, reason: reason)
    }

    /// `kernels` with each waiting RECV's blame reason filled in.
    public func annotated() -> [KernelRecord] {
        kernels.map { k in
            var k = k
            k.blameReason = split(k)?.reason ?? .none
            return k
        }
    }
}
