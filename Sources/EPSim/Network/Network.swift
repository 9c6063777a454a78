import EventCore

/// The aggregate of one low-latency operation's messages from one rank to another.
///
/// DeepEP posts one message per selection and then one count (dispatch) or flag (combine)
/// per destination expert on the same queue pair, so the control messages arrive no
/// earlier than the last data byte. EPSim carries all of them as one flow per
/// (operation, source, destination); the flow's delivery time is the arrival of its last
/// control message, which is all a RECV kernel waits for.
public struct Flow: Sendable, Equatable {
    public var source: Int32
    public var destination: Int32
    /// Global operation number (step * operations per step + ordinal).
    public var operation: Int32
    public var path: Path
    /// Data messages carried (0 is normal: the control messages are still sent).
    public var messages: Int32
    public var bytes: Int64

    public init(source: Int32, destination: Int32, operation: Int32, path: Path, messages: Int32, bytes: Int64) {
        self.source = source
        self.destination = destination
        self.operation = operation
        self.path = path
        self.messages = messages
        self.bytes = bytes
    }
}

/// A flow whose last control message has reached its destination.
public struct Delivery: Sendable, Equatable {
    public var flow: Flow
    /// Time the flow was posted (end of its SEND).
    public var posted: SimTime
    public var arrival: SimTime
}

/// The interface every network model implements; the engine is generic over it, so the
/// model is specialised into the event loop with no existential boxing.
///
/// A model may deliver a flow at once (when its arrival time is already known, as in the
/// ideal network) or later from `advance(to:)` (a contended model that changes rates as
/// flows come and go). Deliveries carry their own arrival time, which is never earlier
/// than the time they are reported at.
public protocol NetworkModel {
    /// A flow is posted at `now` (the end of its SEND kernel).
    mutating func post(_ flow: Flow, at now: SimTime, deliveries: inout [Delivery])
    /// The next time the model must be advanced to, if it has internal events.
    var nextEventTime: SimTime? { get }
    /// Processes the model's internal events up to and including `time`.
    mutating func advance(to time: SimTime, deliveries: inout [Delivery])
}

/// Each flow alone on its path: arrival = post + latency + bytes / bandwidth (rounded up to
/// a picosecond by ``SimTime/transfer(bytes:gigabytesPerSecond:)``), plus one round trip
/// (2 x latency) when the fence option is on and an RDMA flow carried data.
///
/// Used for closed-form checks (contract §9) and as the "no contention" bound.
public struct IdealNetwork: NetworkModel {
    public let config: NetworkConfig

    public init(config: NetworkConfig) { self.config = config }

    /// The flight time of `bytes` over `path`.
    public func flightTime(bytes: Int64, path: Path) -> SimTime {
        let link = config.link(path)
        var t = link.latency + SimTime.transfer(bytes: bytes, gigabytesPerSecond: link.bandwidthGBps)
        if config.fenceControlMessages && path == .rdma && bytes > 0 { t += link.latency + link.latency }
        return t
    }

    public mutating func post(_ flow: Flow, at now: SimTime, deliveries: inout [Delivery]) {
        deliveries.append(Delivery(flow: flow, posted: now, arrival: now + flightTime(bytes: flow.bytes, path: flow.path)))
    }

    public var nextEventTime: SimTime? { nil }

    public mutating func advance(to time: SimTime, deliveries: inout [Delivery]) {}
}
