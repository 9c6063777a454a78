import EventCore

/// Why the last message a RECV waited for came late (decided by the engine when the RECV
/// completes; see `Engine.blame`).
public enum BlameReason: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    /// The blocking rank began its SEND after the receiver began its own.
    case startedLate = 1
    /// The blocking rank's SEND took longer, or its message to this rank was bigger.
    case sentMore = 2
    /// The message took longer than it would have alone on its links: a shared port.
    case busyPort = 3
    /// None of these: the wait is the message's own latency and transfer time.
    case inFlight = 4

    public var description: String {
        switch self {
        case .none: return ""
        case .startedLate: return "started late"
        case .sentMore: return "sent more bytes"
        case .busyPort: return "busy port"
        case .inFlight: return "in flight"
        }
    }

    public init?(name: String) {
        guard let r = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = r
    }
}

/// Finds the SEND kernel that posted the message a RECV waited for last.
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
}
