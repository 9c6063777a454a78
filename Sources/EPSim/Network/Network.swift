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
    /// Time the flow's control messages were posted (end of its SEND).
    public var posted: SimTime
    public var arrival: SimTime
    /// Time the flow's data was first free to move (start of its SEND, or `posted`).
    public var started: SimTime
}

/// The interface every network model implements; the engine is generic over it, so the
/// model is specialised into the event loop with no existential boxing.
///
/// A SEND posts its flows when it starts: data may move from `dataFrom` on, and the
/// control messages (counts or flags) are released at `controlAt`, the end of the SEND,
/// after every data message was issued. A model may deliver a flow at once (when its
/// arrival is already known, as in the ideal network) or later from `advance(to:)` (a
/// contended model whose rates change as flows come and go). A delivery's arrival is never
/// earlier than `controlAt`.
public protocol NetworkModel {
    /// True when NVLink payload is written by the SEND kernel's own SMs (DeepEP's
    /// NVLink-in-low-latency mode): the engine then lengthens the SEND by those bytes over
    /// the NVLink bandwidth, and the model carries only the control message.
    static var movesNVLinkInSendKernel: Bool { get }
    mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery])
    /// The next time the model must be advanced to, if it has internal events.
    mutating func nextEventTime() -> SimTime?
    /// Processes the model's internal events at `time` (the value `nextEventTime` gave).
    mutating func advance(to time: SimTime, deliveries: inout [Delivery])
    /// Internal events processed so far (port departures), for the benchmark.
    var eventCount: Int { get }
}

/// Each flow alone on its path: arrival = control release + latency + bytes / bandwidth
/// (rounded up to a picosecond by ``SimTime/transfer(bytes:gigabytesPerSecond:)``), plus
/// one round trip (2 x latency) when the fence option is on and an RDMA flow carried data.
///
/// This is the contract's closed-form network (§9): data is counted from the end of the
/// SEND, on every path, NVLink included (unless `rdma_data: during-send` is chosen, when
/// RDMA data moves from the start of the SEND as in ``PortNetwork``).
public struct IdealNetwork: NetworkModel {
    public let config: NetworkConfig

    public init(config: NetworkConfig) { self.config = config }

    public static var movesNVLinkInSendKernel: Bool { false }

    /// The flight time of `bytes` over `path`.
    public func flightTime(bytes: Int64, path: Path) -> SimTime {
        let link = config.link(path)
        var t = link.latency + SimTime.transfer(bytes: bytes, gigabytesPerSecond: link.bandwidthGBps)
        if config.fenceControlMessages && path == .rdma && bytes > 0 { t += link.latency + link.latency }
        return t
    }

    public mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery]) {
        var arrival = release + flightTime(bytes: flow.bytes, path: flow.path)
        if config.rdmaDataDuringSend && flow.path == .rdma {
            // The data left from the start of the SEND; the counts follow it, and leave no
            // earlier than the end of the SEND.
            let link = config.link(.rdma)
            var dataDone = start + SimTime.transfer(bytes: flow.bytes, gigabytesPerSecond: link.bandwidthGBps)
            if config.fenceControlMessages && flow.bytes > 0 { dataDone += link.latency + link.latency }
            arrival = max(release, dataDone) + link.latency
        }
        deliveries.append(Delivery(flow: flow, posted: release, arrival: arrival, started: start))
    }

    public mutating func nextEventTime() -> SimTime? { nil }

    public mutating func advance(to time: SimTime, deliveries: inout [Delivery]) {}

    public var eventCount: Int { 0 }
}
