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
/// A model owns the network's physics: which transport joins two ranks and which NIC a rank
/// uses (its ``topology``), what a SEND kernel pays to move payload itself
/// (``sendStoreTime(peerBytes:selfBytes:)``), when a flow arrives alone on its links
/// (``uncontendedArrival(bytes:path:started:posted:)``, which blame compares real arrivals
/// with) and when it arrives among the others (``post(_:dataFrom:controlAt:deliveries:)``).
/// The engine asks; it never re-derives any of these.
///
/// A SEND posts its flows when it starts: data may move from `dataFrom` on, and the
/// control messages (counts or flags) are released at `controlAt`, the end of the SEND,
/// after every data message was issued. A model may deliver a flow at once (when its
/// arrival is already known, as in the ideal network) or later from `advance(to:)` (a
/// contended model whose rates change as flows come and go). Every posted flow is
/// delivered exactly once, and a delivery's arrival is never earlier than `controlAt` nor
/// than its uncontended arrival. The shared property suite (`NetworkModelProperties` in the
/// tests) checks these rules on every conforming model.
///
/// Models may own unmanaged memory, so the protocol allows non-copyable conformers: a
/// network is one value, owned by one engine.
///
/// Adding a model: a conformer in `Sources/EPSim/Network/`, a ``NetworkKind`` case, and its
/// line in ``Simulation/run(_:options:)`` (see docs/architecture.md).
public protocol NetworkModel: ~Copyable {
    /// Builds the model for a scenario's network section and its topology.
    init(config: NetworkConfig, topology: Topology)
    /// `rdma_data` when the scenario leaves it out.
    static var rdmaDataDuringSendByDefault: Bool { get }
    /// True when NVLink payload (to same-node peers and to the rank itself) is written by the
    /// SEND kernel's own SMs (DeepEP's NVLink-in-low-latency mode): the SEND then lasts
    /// ``sendStoreTime(peerBytes:selfBytes:)`` longer and the model carries only the control
    /// message over NVLink.
    static var movesNVLinkInSendKernel: Bool { get }
    var topology: Topology { get }
    /// Bytes the model keeps for a run of `config` on `topology` (for the run's memory budget).
    static func residentBytes(config: NetworkConfig, topology: Topology) -> Int64
    /// Time a SEND kernel's SMs spend storing `peerBytes` to NVLink peers and `selfBytes` to
    /// its own rank (zero when the model carries NVLink payload itself).
    func sendStoreTime(peerBytes: Int64, selfBytes: Int64) -> SimTime
    /// When `flow` (its bytes, messages and path), whose SEND ran from `started` to
    /// `posted`, would arrive alone on its links.
    func uncontendedArrival(_ flow: Flow, started: SimTime, posted: SimTime) -> SimTime
    mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery])
    /// The next time the model must be advanced to, if it has internal events.
    mutating func nextEventTime() -> SimTime?
    /// Processes the model's internal events at `time` (the value `nextEventTime` gave).
    mutating func advance(to time: SimTime, deliveries: inout [Delivery])
    /// Internal events processed so far (port departures), for the benchmark.
    var eventCount: Int { get }
}

extension NetworkConfig {
    /// Time a SEND kernel's SMs spend storing `peerBytes` to NVLink peers at the NVLink
    /// bandwidth and `selfBytes` to their own rank at ``selfCopyGBps``, for the models whose
    /// SEND writes NVLink payload itself: one rounding when the two rates are equal (exactly
    /// one transfer), else the sum of both rates' times rounded up.
    func smStoreTime(peerBytes: Int64, selfBytes: Int64) -> SimTime {
        if nvlink.bandwidthGBps == selfCopyGBps { return SimTime.transfer(bytes: peerBytes + selfBytes, gigabytesPerSecond: selfCopyGBps) }
        return SimTime.saturating(picos: (Double(peerBytes) * 1000 / nvlink.bandwidthGBps + Double(selfBytes) * 1000 / selfCopyGBps).rounded(.up))
    }

    /// Arrival of an RDMA flow alone on its links, shared by the models that move RDMA data
    /// themselves: the data leaves at `started` (`rdma_data: during-send`) or at `posted`,
    /// holds its egress port ``rdmaEgressTime(bytes:messages:)`` (its bytes over the
    /// bandwidth, plus its messages over the NIC's message rate), waits the fence
    /// (``fenceDelay(path:bytes:)``), and the control message, released at `posted`, arrives
    /// one latency after both.
    @inline(__always) func aloneRDMAArrival(bytes: Int64, messages: Int32, started: SimTime, posted: SimTime) -> SimTime {
        let dataStart = rdmaDataDuringSend ? started : posted
        let dataDone = dataStart + rdmaEgressTime(bytes: bytes, messages: messages) + fenceDelay(path: .rdma, bytes: bytes)
        return max(posted, dataDone) + rdma.latency
    }
}

/// Each flow alone on its path: arrival = control release + latency + bytes / bandwidth
/// (rounded up to a picosecond by ``SimTime/transfer(bytes:gigabytesPerSecond:)``), plus
/// one round trip (2 x latency) when the fence option is on and an RDMA flow carried data.
///
/// This is the contract's closed-form network (§9): data is counted from the end of the
/// SEND, on every path, NVLink included (unless `rdma_data: during-send` is chosen, when
/// RDMA data moves from the start of the SEND as in ``PortNetwork``). The NIC's message
/// rate and the NVLink ingress ports are contention and cost of the contended models only:
/// here a flow is its bytes over its link's bandwidth, as the contract writes it.
public struct IdealNetwork: NetworkModel {
    public let config: NetworkConfig
    public let topology: Topology

    public init(config: NetworkConfig, topology: Topology) {
        self.config = config
        self.topology = topology
    }

    /// The contract's closed form counts flights from the end of the SEND (§9).
    public static var rdmaDataDuringSendByDefault: Bool { false }
    public static var movesNVLinkInSendKernel: Bool { false }

    public func sendStoreTime(peerBytes: Int64, selfBytes: Int64) -> SimTime { .zero }

    /// Nothing beyond its configuration.
    public static func residentBytes(config: NetworkConfig, topology: Topology) -> Int64 { 0 }

    /// The flight time of `bytes` over `path` from the end of the SEND.
    public func flightTime(bytes: Int64, path: Path) -> SimTime {
        let link = config.link(path)
        return link.latency + SimTime.transfer(bytes: bytes, gigabytesPerSecond: link.bandwidthGBps) + config.fenceDelay(path: path, bytes: bytes)
    }

    public func uncontendedArrival(_ flow: Flow, started: SimTime, posted: SimTime) -> SimTime {
        if config.rdmaDataDuringSend && flow.path == .rdma {
            // The data left from the start of the SEND; the counts follow it, and leave no
            // earlier than the end of the SEND.
            // The contract's closed form has no message cost: messages: 0.
            return config.aloneRDMAArrival(bytes: flow.bytes, messages: 0, started: started, posted: posted)
        }
        return posted + flightTime(bytes: flow.bytes, path: flow.path)
    }

    public mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery]) {
        let arrival = uncontendedArrival(flow, started: start, posted: release)
        deliveries.append(Delivery(flow: flow, posted: release, arrival: arrival, started: start))
    }

    public mutating func nextEventTime() -> SimTime? { nil }

    public mutating func advance(to time: SimTime, deliveries: inout [Delivery]) {}

    public var eventCount: Int { 0 }
}
