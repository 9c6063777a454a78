import EventCore

/// The contended network (`ports`, the default): every NIC has an RDMA egress and an RDMA
/// ingress port, every GPU an NVLink ingress port, and flows that share a port share its
/// bandwidth. A rank's RDMA flows use its NIC (``Topology/nic(of:)``: one per GPU unless
/// `nics_per_node` says fewer), so the ranks sharing a NIC share its ports.
///
/// **Discipline: each port on its own.** Each port serves its active flows in processor
/// sharing: with `n` flows active, each progresses at `bandwidth / n`. A flow's bytes must be
/// served by both its source's egress and its destination's ingress; each port is simulated
/// on its own (a flow counts as active at a port until that port has served its bytes), and
/// the flow's data is done when the later of the two has. This is the fluid model of a
/// fabric whose switch buffers decouple the two ports: a sender pushes each flow at its
/// egress share whatever the receiver's port is doing, and the switch queues what the
/// receiver's port cannot take yet. A congestion-controlled fabric instead slows a flow at
/// its sender to what its busier port gives it and hands the rest to the sender's other
/// flows (max-min fairness, ``FairNetwork``); the two agree exactly for a flow alone, for
/// `k` equal senders into one receiver (all finish at `latency + k * bytes / bandwidth`), for
/// one sender to `k` receivers, for a balanced all-to-all and for flows on disjoint ports.
/// Where a flow is held back at one port, its share at the other is not handed to others,
/// so such mixes come out later than max-min (`docs/model.md` gives the closed cases).
///
/// **Messages.** Each RDMA data message costs its egress port `1 / message_rate` besides its
/// bytes (``NetworkConfig/rdmaBytesPerMessage``): a NIC posts a bounded number of work
/// requests per second, and the cost adds to the wire time rather than hiding under it
/// (uccl-project/uccl pull request 745: grouping the writes per expert cut an EFA dispatch
/// from 218.6 to 174.9 us).
///
/// **Timing.** Data starts moving when the SEND starts (`rdma_data: during-send`, the
/// default here: DeepEP issues each token's RDMA writes as the kernel processes it) or when
/// it ends (`after-send`). The control message leaves at the end of the SEND (`controlAt`),
/// follows the data on the same queue pair, and arrives `latency` after the later of the
/// two (plus a round trip when `fence` is on and the flow carried data).
///
/// **NVLink.** Payload to same-node peers (when `nvlink_for_ll` is on) and to the rank itself
/// is written by the SEND kernel's SMs (DeepEP's NVLink-in-LL mode): the engine lengthens the
/// SEND by those bytes over the NVLink bandwidth, which is the sender's side. The receiver's
/// side is its NVLink ingress port (`nvlink.ingress_gbps`): a peer's payload passes it from
/// the start of the SEND, shared with the other peers writing to that rank, and the flag
/// arrives `nvlink.latency` after the later of the SEND's end and the payload's passage. One
/// sender never fills it (its stores are slower than the port), several into a hot rank do.
/// Back-pressure on the senders' stores is not modelled: a hot destination delays its own
/// flags, not the senders' kernels. A rank's copy to itself never crosses NVLink.
///
/// Each port keeps a virtual clock `V` (bytes served to each active flow so far) and a
/// min-heap of its flows' finishing values of `V`, so a flow costs O(log n) per port; the
/// ports' next departures sit in an indexed heap, one entry per busy port.
///
/// Non-copyable: it owns the heaps' memory and frees it in `deinit`, so no copy can share
/// (and corrupt) another's heaps.
public struct PortNetwork: NetworkModel, ~Copyable {
    /// DeepEP issues each token's RDMA writes as the kernel processes it.
    public static var rdmaDataDuringSendByDefault: Bool { true }
    public static var movesNVLinkInSendKernel: Bool { true }

    struct Port {
        /// Bytes served to each active flow since the port was created.
        var virtual: Double = 0
        var lastUpdate: SimTime = .zero
        /// Active flows (the size of the port's heap).
        var active: Int = 0
        /// The next departure time, or -1 when idle.
        var next: Int64 = -1
        /// Where the port sits in the departure heap, or -1, and the time it is filed
        /// under there: never later than `next` (when `next` moves later the entry is only
        /// corrected once it reaches the top, which saves most of the heap work).
        var position: Int32 = -1
        var filedAt: Int64 = -1
    }

    struct PendingFlow {
        var flow: Flow
        var started: SimTime
        var controlAt: SimTime
        var portsLeft: UInt8
        var dataDone: SimTime
    }

    let config: NetworkConfig
    public let topology: Topology
    /// `nicOfRank[r]`: the NIC of rank `r` (``Topology/nic(of:)``, tabulated).
    let nicOfRank: [Int32]
    let bandwidthGBps: Double
    /// Bytes per picosecond of an RDMA port.
    let rate: Double
    /// Egress bytes one RDMA data message costs besides its payload.
    let bytesPerMessage: Double
    /// NVLink ingress ports exist (`nvlink.ingress_gbps` finite and NVLink bandwidth finite).
    let nvlinkIngress: Bool
    let ingressGBps: Double
    /// Bytes per picosecond of an NVLink ingress port.
    let ingressRate: Double
    /// The first NVLink ingress port (`ports[firstNVLinkPort + rank]`).
    let firstNVLinkPort: Int
    /// `ports[2 * nic]` RDMA egress, `ports[2 * nic + 1]` RDMA ingress, then one NVLink
    /// ingress port per rank when ``nvlinkIngress``.
    var ports: [Port]
    /// Each port's heap lives in its own fixed-capacity region of two allocations (the
    /// finishing virtual times, and the flows), so no per-port array and no copy-on-write
    /// check sits in the hot path and the keys compared together share cache lines. The
    /// network is non-copyable and frees them in `deinit`.
    var keys: UnsafeMutablePointer<Double>
    var slots: UnsafeMutablePointer<Int32>
    var capacity: Int
    var pending: [PendingFlow] = []
    var freeSlots: [Int32] = []
    /// Flows posted whose data has not started (`rdma_data: after-send`), their slots by
    /// data start, so that a port never serves ahead of the engine's clock: a flow joins its
    /// ports only when its data starts.
    var waiting = EventQueue<Int32>()
    /// Busy ports ordered by their next departure (ties: lower port first).
    var departures: [Int32] = []
    public private(set) var eventCount = 0

    public init(config: NetworkConfig, topology: Topology) {
        self.config = config
        self.topology = topology
        nicOfRank = (0..<topology.ranks).map { Int32(topology.nic(of: RankID($0))) }
        bandwidthGBps = config.rdma.bandwidthGBps
        rate = config.rdma.bandwidthGBps / 1000
        bytesPerMessage = config.rdmaBytesPerMessage
        nvlinkIngress = Self.hasNVLinkIngress(config)
        ingressGBps = config.nvlinkIngressGBps
        ingressRate = config.nvlinkIngressGBps / 1000
        firstNVLinkPort = 2 * topology.nicCount
        let portCount = Self.portCount(config: config, topology: topology)
        ports = Array(repeating: Port(), count: portCount)
        // A port holds at most the flows of the few operations in flight (DeepEP's double
        // buffering bounds them) from the ranks it serves; start with room for four
        // operations and grow if needed.
        capacity = Self.initialCapacity(topology)
        keys = .allocate(capacity: capacity * portCount)
        slots = .allocate(capacity: capacity * portCount)
        departures.reserveCapacity(portCount)
    }

    /// The port heaps at their starting capacity (they grow only when more flows share a
    /// port than four operations of every rank served by its NIC would bring).
    public static func residentBytes(config: NetworkConfig, topology: Topology) -> Int64 {
        let ports = Double(portCount(config: config, topology: topology))
        let capacity = Double(initialCapacity(topology))
        let bytes = ports * capacity * Double(MemoryLayout<Double>.stride + MemoryLayout<Int32>.stride) + ports * Double(MemoryLayout<Port>.stride)
        return bytes >= 9e18 ? .max : Int64(bytes)
    }

    /// NVLink payload crosses a contended ingress port only when both rates are finite.
    static func hasNVLinkIngress(_ config: NetworkConfig) -> Bool {
        config.nvlinkIngressGBps.isFinite && config.nvlink.bandwidthGBps.isFinite
    }

    static func portCount(config: NetworkConfig, topology: Topology) -> Int {
        2 * topology.nicCount + (hasNVLinkIngress(config) ? topology.ranks : 0)
    }

    static func initialCapacity(_ topology: Topology) -> Int {
        max(4 * topology.ranks * (topology.gpusPerNode / topology.nicsPerNode), 16)
    }

    deinit {
        keys.deallocate()
        slots.deallocate()
    }

    /// The SEND's SMs store NVLink peers' and its own payload (``NetworkConfig/smStoreTime(peerBytes:selfBytes:)``).
    public func sendStoreTime(peerBytes: Int64, selfBytes: Int64) -> SimTime { config.smStoreTime(peerBytes: peerBytes, selfBytes: selfBytes) }

    /// NVLink: one latency after the later of the SEND's end and the payload's passage
    /// through the destination's ingress port alone (a peer's payload, when that port is
    /// modelled), else after the SEND (its payload was stored by the SEND). RDMA: see
    /// ``NetworkConfig/aloneRDMAArrival(bytes:messages:started:posted:)``; a flow without
    /// data, or on an infinitely fast NIC, arrives one latency (plus the fence) after the SEND.
    public func uncontendedArrival(_ flow: Flow, started: SimTime, posted: SimTime) -> SimTime {
        if flow.path == .nvlink {
            guard crossesNVLinkIngress(flow) else { return posted + config.nvlink.latency }
            return max(posted, started + SimTime.transfer(bytes: flow.bytes, gigabytesPerSecond: ingressGBps)) + config.nvlink.latency
        }
        if flow.bytes == 0 || bandwidthGBps.isInfinite {
            return posted + config.rdma.latency + config.fenceDelay(path: .rdma, bytes: flow.bytes)
        }
        return config.aloneRDMAArrival(bytes: flow.bytes, messages: flow.messages, started: started, posted: posted)
    }

    /// A peer's NVLink payload, when NVLink ingress ports are modelled.
    @inline(__always) func crossesNVLinkIngress(_ flow: Flow) -> Bool {
        nvlinkIngress && flow.bytes > 0 && flow.source != flow.destination
    }

    public mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery]) {
        let nvlinkPayload = flow.path == .nvlink && crossesNVLinkIngress(flow)
        if !nvlinkPayload && (flow.path == .nvlink || flow.bytes == 0 || bandwidthGBps.isInfinite) {
            let arrival = uncontendedArrival(flow, started: start, posted: release)
            deliveries.append(Delivery(flow: flow, posted: release, arrival: arrival, started: start))
            return
        }
        let slot: Int32
        let dataStart = nvlinkPayload || config.rdmaDataDuringSend ? start : release
        let entry = PendingFlow(flow: flow, started: start, controlAt: release, portsLeft: nvlinkPayload ? 1 : 2, dataDone: dataStart)
        if let free = freeSlots.popLast() {
            slot = free
            pending[Int(slot)] = entry
        } else {
            slot = Int32(pending.count)
            pending.append(entry)
        }
        if dataStart > start {
            // after-send: the data joins its ports when the SEND ends.
            waiting.push(slot, at: dataStart)
        } else {
            join(slot, at: dataStart)
        }
    }

    public mutating func nextEventTime() -> SimTime? {
        let start = waiting.nextTime
        guard let departure = nextDeparture() else { return start }
        return start.map { min($0, departure) } ?? departure
    }

    /// The earliest port departure.
    mutating func nextDeparture() -> SimTime? {
        while let first = departures.first {
            let p = Int(first)
            if ports[p].next == ports[p].filedAt { return SimTime(picos: ports[p].next) }
            // Filed too early: idle now, or its departure moved later.
            if ports[p].next < 0 {
                removeDeparture(at: 0)
            } else {
                ports[p].filedAt = ports[p].next
                siftDeparture(0)
            }
        }
        return nil
    }

    /// Departures at `time` first (served with the flows they had), then the flows whose
    /// data starts at `time` join their ports.
    public mutating func advance(to time: SimTime, deliveries: inout [Delivery]) {
        while let t = nextDeparture(), t == time {
            depart(port: Int(departures[0]), at: time, deliveries: &deliveries)
        }
        while let (start, slot) = waiting.first, start == time {
            waiting.removeFirst()
            join(slot, at: time)
        }
    }

    /// Adds the flow in `slot` to its ports at `time` (its data's start).
    mutating func join(_ slot: Int32, at time: SimTime) {
        let flow = pending[Int(slot)].flow
        if flow.path == .nvlink {
            add(slot, bytes: Double(flow.bytes), to: firstNVLinkPort + Int(flow.destination), at: time)
            return
        }
        add(slot, bytes: Double(flow.bytes) + Double(flow.messages) * bytesPerMessage, to: 2 * Int(nicOfRank[Int(flow.source)]), at: time)
        add(slot, bytes: Double(flow.bytes), to: 2 * Int(nicOfRank[Int(flow.destination)]) + 1, at: time)
    }

    // MARK: Ports

    /// Bytes per picosecond of port `p`.
    @inline(__always) func portRate(_ p: Int) -> Double { p < firstNVLinkPort ? rate : ingressRate }

    mutating func add(_ slot: Int32, bytes: Double, to p: Int, at time: SimTime) {
        // Serve the port's active flows up to `time`.
        let active = ports[p].active
        if active > 0 {
            ports[p].virtual += Double((time - ports[p].lastUpdate).picos) * portRate(p) / Double(active)
        }
        ports[p].lastUpdate = time
        heapPush(p, key: ports[p].virtual + bytes, slot: slot)
        schedule(p)
    }

    /// Schedules the port's next departure: the flow with the least left, when every
    /// active flow gets `bandwidth / n`.
    mutating func schedule(_ p: Int) {
        let active = ports[p].active
        if active == 0 {
            ports[p].next = -1
        } else {
            // Bytes the port must serve in all before the first flow is done.
            let work = max(0, keys[p * capacity] - ports[p].virtual) * Double(active)
            let gbps = p < firstNVLinkPort ? bandwidthGBps : ingressGBps
            ports[p].next = (ports[p].lastUpdate + SimTime.saturating(picos: (work * 1000 / gbps).rounded(.up))).picos
        }
        updateDeparture(p)
    }

    mutating func depart(port p: Int, at time: SimTime, deliveries: inout [Delivery]) {
        eventCount += 1
        let base = p * capacity
        let finish = keys[base]
        ports[p].virtual = finish
        ports[p].lastUpdate = time
        // Every flow that finishes with the first leaves now.
        while ports[p].active > 0 && keys[base] <= finish {
            let slot = Int(slots[base])
            heapPop(p)
            pending[slot].portsLeft -= 1
            pending[slot].dataDone = max(pending[slot].dataDone, time)
            if pending[slot].portsLeft == 0 {
                let f = pending[slot]
                let ready = f.dataDone + config.fenceDelay(path: f.flow.path, bytes: f.flow.bytes)
                deliveries.append(
                    Delivery(flow: f.flow, posted: f.controlAt, arrival: max(f.controlAt, ready) + config.link(f.flow.path).latency, started: f.started))
                freeSlots.append(Int32(slot))
            }
        }
        schedule(p)
    }

    // MARK: Departure heap (indexed: one entry per busy port, updated in place)

    @inline(__always) func departsBefore(_ a: Int32, _ b: Int32) -> Bool {
        let x = ports[Int(a)].filedAt
        let y = ports[Int(b)].filedAt
        return x < y || (x == y && a < b)
    }

    /// Files port `p` under its `next` when it is not in the heap or `next` moved earlier;
    /// a later or cleared `next` is dealt with when the port reaches the top.
    mutating func updateDeparture(_ p: Int) {
        let next = ports[p].next
        guard next >= 0 else { return }
        let at = Int(ports[p].position)
        if at < 0 {
            ports[p].filedAt = next
            departures.append(Int32(p))
            ports[p].position = Int32(departures.count - 1)
            siftDeparture(departures.count - 1)
        } else if next < ports[p].filedAt {
            ports[p].filedAt = next
            siftDeparture(at)
        }
    }

    mutating func removeDeparture(at i: Int) {
        ports[Int(departures[i])].position = -1
        let last = departures.removeLast()
        if i < departures.count {
            departures[i] = last
            ports[Int(last)].position = Int32(i)
            siftDeparture(i)
        }
    }

    mutating func siftDeparture(_ start: Int) {
        var i = start
        let item = departures[i]
        // Up.
        while i > 0 {
            let parent = (i - 1) / 2
            guard departsBefore(item, departures[parent]) else { break }
            departures[i] = departures[parent]
            ports[Int(departures[i])].position = Int32(i)
            i = parent
        }
        // Down.
        let n = departures.count
        while true {
            var child = 2 * i + 1
            guard child < n else { break }
            if child + 1 < n && departsBefore(departures[child + 1], departures[child]) { child += 1 }
            guard departsBefore(departures[child], item) else { break }
            departures[i] = departures[child]
            ports[Int(departures[i])].position = Int32(i)
            i = child
        }
        departures[i] = item
        ports[Int(item)].position = Int32(i)
    }

    // MARK: Port heaps (4-ary: shallower than binary, and pops dominate)

    mutating func grow() {
        let count = ports.count
        let bigger = capacity * 2
        let newKeys = UnsafeMutablePointer<Double>.allocate(capacity: bigger * count)
        let newSlots = UnsafeMutablePointer<Int32>.allocate(capacity: bigger * count)
        for p in 0..<count {
            (newKeys + p * bigger).moveInitialize(from: keys + p * capacity, count: ports[p].active)
            (newSlots + p * bigger).moveInitialize(from: slots + p * capacity, count: ports[p].active)
        }
        keys.deallocate()
        slots.deallocate()
        keys = newKeys
        slots = newSlots
        capacity = bigger
    }

    @inline(__always) func precedes(_ k1: Double, _ s1: Int32, _ k2: Double, _ s2: Int32) -> Bool {
        k1 < k2 || (k1 == k2 && s1 < s2)
    }

    mutating func heapPush(_ p: Int, key: Double, slot: Int32) {
        if ports[p].active == capacity { grow() }
        let k = keys + p * capacity
        let s = slots + p * capacity
        var child = ports[p].active
        ports[p].active += 1
        while child > 0 {
            let parent = (child - 1) >> 2
            guard precedes(key, slot, k[parent], s[parent]) else { break }
            k[child] = k[parent]
            s[child] = s[parent]
            child = parent
        }
        k[child] = key
        s[child] = slot
    }

    mutating func heapPop(_ p: Int) {
        let k = keys + p * capacity
        let s = slots + p * capacity
        let n = ports[p].active - 1
        ports[p].active = n
        guard n > 0 else { return }
        let key = k[n]
        let slot = s[n]
        var parent = 0
        while true {
            let first = 4 * parent + 1
            guard first < n else { break }
            var best = first
            let last = min(first + 4, n)
            var c = first + 1
            while c < last {
                if precedes(k[c], s[c], k[best], s[best]) { best = c }
                c += 1
            }
            guard precedes(k[best], s[best], key, slot) else { break }
            k[parent] = k[best]
            s[parent] = s[best]
            parent = best
        }
        k[parent] = key
        s[parent] = slot
    }
}
