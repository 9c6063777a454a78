import EventCore

/// The congestion-controlled network (`fair`): the same ports as ``PortNetwork`` (an RDMA
/// egress and ingress port per NIC, and per GPU an NVLink egress and ingress port), but every
/// flow moves at one rate, shared **max-min fairly** across both of its ports at once.
///
/// **Discipline.** Between two events (a flow starting or finishing) the rates are the
/// max-min fair allocation, found by progressive filling: every unfrozen flow's rate rises
/// together until some port is full; that port's flows freeze at that rate, their other
/// ports lose what they use, and the rest rise on. A flow held back at a busy port therefore
/// gives its share at its other port to that port's other flows, which ``PortNetwork``
/// does not. This is the allocation that per-flow congestion control converges to on a
/// fabric whose switches do not buffer for the senders (DCQCN on RoCE, InfiniBand
/// congestion control: Zhu et al., "Congestion Control for Large-Scale RDMA Deployments",
/// SIGCOMM 2015, §5 on fairness), ignoring the time it takes to converge.
///
/// **Costs besides bytes.** An RDMA data message costs its egress port `1 / message_rate`
/// (``NetworkConfig/rdmaBytesPerMessage``), so a flow's use of its egress port is
/// `(bytes + messages x bytesPerMessage) / bytes` times its rate: the filling counts it so.
/// A peer's NVLink payload crosses the sender's NVLink egress port (the SEND's SM stores,
/// `nvlink.bandwidth_gbps`) and the receiver's ingress port (`nvlink.ingress_gbps`); the SEND
/// kernel's length still counts its stores at the uncontended rate (back-pressure on the
/// senders' kernels is not modelled, as in ``PortNetwork``). NVLink ports exist only when
/// the ingress rate is finite; otherwise NVLink flows carry their control message alone.
///
/// **Timing** is ``PortNetwork``'s: RDMA data moves from the start of the SEND (or its end
/// with `rdma_data: after-send`), NVLink payload from the start; the control message leaves
/// at the end of the SEND and arrives one latency after the later of that and the data
/// (plus the fence's round trip on RDMA).
///
/// **Cost.** Each recomputation visits every active flow (O(F log P) for F flows on P
/// ports) and happens at every distinct start or finish time, so a step costs about F² per
/// operation: exact and fine for tens of ranks, slow for hundreds (`docs/performance.md`).
/// The allocation is recomputed lazily, once per time at which anything changed.
public struct FairNetwork: NetworkModel, ~Copyable {
    public static var rdmaDataDuringSendByDefault: Bool { true }
    public static var movesNVLinkInSendKernel: Bool { true }

    struct ActiveFlow {
        var flow: Flow
        var started: SimTime
        var controlAt: SimTime
        var dataStart: SimTime
        var egress: Int32
        var ingress: Int32
        /// Egress port bytes per payload byte (1 plus the messages' cost).
        var egressCoefficient: Double
        /// Payload bytes still to move, and the rate (bytes per picosecond) they move at.
        var remaining: Double
        var rate: Double = 0
        /// Finishing time at the current rate, in picoseconds.
        var finish: Int64 = .max
        /// The earliest the data can be done: its start plus its time alone on its ports.
        var earliest: Int64 = 0
        var frozen = false
    }

    let config: NetworkConfig
    public let topology: Topology
    let nicOfRank: [Int32]
    /// Bytes per picosecond of each port: RDMA egress `2 * nic`, ingress `2 * nic + 1`;
    /// NVLink egress `firstNVLinkPort + 2 * rank`, ingress `firstNVLinkPort + 2 * rank + 1`.
    let capacity: [Double]
    let firstNVLinkPort: Int
    let nvlinkPorts: Bool
    let bytesPerMessage: Double
    var active: [ActiveFlow] = []
    /// Flows whose data starts later (`rdma_data: after-send`), by start.
    var waiting: [ActiveFlow] = []
    var now = SimTime.zero
    var dirty = false
    var nextFinish: Int64 = .max
    public private(set) var eventCount = 0
    // Scratch space of the filling, kept between recomputations.
    var left: [Double]
    var weight: [Double]
    var portFlowStart: [Int32]
    var portFlows: [Int32] = []
    /// Each port's next free place in `portFlows` while it is filled.
    var portFill: [Int32]
    var heap: [(level: Double, port: Int32)] = []

    public init(config: NetworkConfig, topology: Topology) {
        self.config = config
        self.topology = topology
        nicOfRank = (0..<topology.ranks).map { Int32(topology.nic(of: RankID($0))) }
        firstNVLinkPort = 2 * topology.nicCount
        nvlinkPorts = PortNetwork.hasNVLinkIngress(config)
        bytesPerMessage = config.rdmaBytesPerMessage
        let count = Self.portCount(config: config, topology: topology)
        var capacity = Array(repeating: config.rdma.bandwidthGBps / 1000, count: count)
        if nvlinkPorts {
            for r in 0..<topology.ranks {
                capacity[2 * topology.nicCount + 2 * r] = config.nvlink.bandwidthGBps / 1000
                capacity[2 * topology.nicCount + 2 * r + 1] = config.nvlinkIngressGBps / 1000
            }
        }
        self.capacity = capacity
        left = Array(repeating: 0, count: count)
        weight = Array(repeating: 0, count: count)
        portFlowStart = Array(repeating: 0, count: count + 1)
        portFill = Array(repeating: 0, count: count)
    }

    static func portCount(config: NetworkConfig, topology: Topology) -> Int {
        2 * topology.nicCount + (PortNetwork.hasNVLinkIngress(config) ? 2 * topology.ranks : 0)
    }

    /// The per-port scratch arrays; the active flows themselves grow with the run's
    /// concurrency (a few operations of every rank).
    public static func residentBytes(config: NetworkConfig, topology: Topology) -> Int64 {
        let ports = Double(portCount(config: config, topology: topology))
        let flows = Double(topology.ranks) * Double(topology.ranks) * 4
        let bytes = ports * 3 * 8 + flows * Double(MemoryLayout<ActiveFlow>.stride + 4)
        return bytes >= 9e18 ? .max : Int64(bytes)
    }

    /// The SEND's SMs store NVLink peers' and its own payload (``NetworkConfig/smStoreTime(peerBytes:selfBytes:)``).
    public func sendStoreTime(peerBytes: Int64, selfBytes: Int64) -> SimTime { config.smStoreTime(peerBytes: peerBytes, selfBytes: selfBytes) }

    @inline(__always) func crossesNVLink(_ flow: Flow) -> Bool {
        nvlinkPorts && flow.bytes > 0 && flow.source != flow.destination
    }

    /// Time the flow's data takes alone on its ports.
    func aloneDataTime(_ flow: Flow) -> SimTime {
        if flow.path == .nvlink {
            return SimTime.transfer(bytes: flow.bytes, gigabytesPerSecond: min(config.nvlink.bandwidthGBps, config.nvlinkIngressGBps))
        }
        return config.rdmaEgressTime(bytes: flow.bytes, messages: flow.messages)
    }

    public func uncontendedArrival(_ flow: Flow, started: SimTime, posted: SimTime) -> SimTime {
        if flow.path == .nvlink {
            guard crossesNVLink(flow) else { return posted + config.nvlink.latency }
            return max(posted, started + aloneDataTime(flow)) + config.nvlink.latency
        }
        if flow.bytes == 0 || config.rdma.bandwidthGBps.isInfinite {
            return posted + config.rdma.latency + config.fenceDelay(path: .rdma, bytes: flow.bytes)
        }
        return config.aloneRDMAArrival(bytes: flow.bytes, messages: flow.messages, started: started, posted: posted)
    }

    public mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery]) {
        let nvlinkPayload = flow.path == .nvlink && crossesNVLink(flow)
        if !nvlinkPayload && (flow.path == .nvlink || flow.bytes == 0 || config.rdma.bandwidthGBps.isInfinite) {
            deliveries.append(Delivery(flow: flow, posted: release, arrival: uncontendedArrival(flow, started: start, posted: release), started: start))
            return
        }
        progress(to: start)
        let dataStart = nvlinkPayload || config.rdmaDataDuringSend ? start : release
        var entry: ActiveFlow
        if nvlinkPayload {
            let base = firstNVLinkPort
            entry = ActiveFlow(
                flow: flow, started: start, controlAt: release, dataStart: dataStart, egress: Int32(base + 2 * Int(flow.source)),
                ingress: Int32(base + 2 * Int(flow.destination) + 1), egressCoefficient: 1, remaining: Double(flow.bytes))
        } else {
            entry = ActiveFlow(
                flow: flow, started: start, controlAt: release, dataStart: dataStart, egress: 2 * nicOfRank[Int(flow.source)],
                ingress: 2 * nicOfRank[Int(flow.destination)] + 1,
                egressCoefficient: 1 + Double(flow.messages) * bytesPerMessage / Double(flow.bytes), remaining: Double(flow.bytes))
        }
        entry.earliest = (dataStart + aloneDataTime(flow)).picos
        if dataStart > now {
            waiting.append(entry)
        } else {
            active.append(entry)
        }
        dirty = true
    }

    public mutating func nextEventTime() -> SimTime? {
        if dirty {
            refill()
            dirty = false
        }
        var next = nextFinish
        for w in waiting where w.dataStart.picos < next { next = w.dataStart.picos }
        return next == .max ? nil : SimTime(picos: next)
    }

    public mutating func advance(to time: SimTime, deliveries: inout [Delivery]) {
        guard nextEventTime() == time else { return }
        eventCount += 1
        progress(to: time)
        // Flows whose data is done now leave; the fence and the latency follow.
        var i = 0
        while i < active.count {
            if active[i].finish <= time.picos {
                let f = active[i]
                let ready = time + config.fenceDelay(path: f.flow.path, bytes: f.flow.bytes)
                deliveries.append(
                    Delivery(flow: f.flow, posted: f.controlAt, arrival: max(f.controlAt, ready) + config.link(f.flow.path).latency, started: f.started))
                active.swapAt(i, active.count - 1)
                active.removeLast()
            } else {
                i += 1
            }
        }
        var w = 0
        while w < waiting.count {
            if waiting[w].dataStart <= time {
                active.append(waiting[w])
                waiting.swapAt(w, waiting.count - 1)
                waiting.removeLast()
            } else {
                w += 1
            }
        }
        dirty = true
    }

    /// Moves every active flow on at its rate from the model's clock to `time`.
    mutating func progress(to time: SimTime) {
        guard time > now else { return }
        let dt = Double((time - now).picos)
        for i in active.indices { active[i].remaining -= active[i].rate * dt }
        now = time
    }

    /// The max-min fair rates of the active flows by progressive filling, and each flow's
    /// finishing time at them.
    mutating func refill() {
        nextFinish = .max
        guard !active.isEmpty else { return }
        // Flows by port (counting sort): a flow appears under its egress and its ingress.
        let ports = capacity.count
        for p in 0...ports { portFlowStart[p] = 0 }
        for f in active {
            portFlowStart[Int(f.egress) + 1] += 1
            portFlowStart[Int(f.ingress) + 1] += 1
        }
        for p in 0..<ports { portFlowStart[p + 1] += portFlowStart[p] }
        if portFlows.count < 2 * active.count { portFlows = Array(repeating: 0, count: 2 * active.count) }
        for p in 0..<ports { portFill[p] = portFlowStart[p] }
        heap.removeAll(keepingCapacity: true)
        for p in 0..<ports {
            left[p] = capacity[p]
            weight[p] = 0
        }
        for i in active.indices {
            active[i].frozen = false
            let e = Int(active[i].egress)
            let g = Int(active[i].ingress)
            portFlows[Int(portFill[e])] = Int32(i)
            portFill[e] += 1
            portFlows[Int(portFill[g])] = Int32(i)
            portFill[g] += 1
            weight[e] += active[i].egressCoefficient
            weight[g] += 1
        }
        for p in 0..<ports where weight[p] > 0 { push(level: left[p] / weight[p], port: Int32(p)) }
        // Fill: the port with the lowest fair level fills first; its unfrozen flows freeze
        // at that level, and their other ports give up what they use.
        while let (level, port) = pop() {
            let p = Int(port)
            guard weight[p] > 0, level == max(0, left[p]) / weight[p] else { continue }
            for k in Int(portFlowStart[p])..<Int(portFlowStart[p + 1]) {
                let i = Int(portFlows[k])
                guard !active[i].frozen else { continue }
                active[i].frozen = true
                active[i].rate = level
                let egressSide = Int(active[i].egress) == p
                let other = egressSide ? Int(active[i].ingress) : Int(active[i].egress)
                let use = egressSide ? 1 : active[i].egressCoefficient
                left[other] -= use * level
                weight[other] -= use
                if weight[other] > 1e-12 {
                    push(level: max(0, left[other]) / weight[other], port: Int32(other))
                } else {
                    weight[other] = 0
                }
            }
            weight[p] = 0
        }
        for i in active.indices {
            let f = active[i]
            var finish: Int64
            if f.remaining == Double(f.flow.bytes) && f.dataStart == now && isAlone(f) {
                // Alone on both ports since it started: exactly its closed form.
                finish = f.earliest
            } else if f.rate > 0 {
                // Never earlier than alone (the rounding of a shared rate could make it 1 ps so).
                finish = max(f.earliest, (now + SimTime.saturating(picos: max(0, f.remaining / f.rate).rounded(.up))).picos)
            } else {
                finish = .max
            }
            active[i].finish = finish
            nextFinish = min(nextFinish, finish)
        }
    }

    /// The flow is the only one on both of its ports.
    func isAlone(_ f: ActiveFlow) -> Bool {
        portFlowStart[Int(f.egress) + 1] - portFlowStart[Int(f.egress)] == 1
            && portFlowStart[Int(f.ingress) + 1] - portFlowStart[Int(f.ingress)] == 1
    }

    // MARK: Filling heap (binary, lowest level first; ties: lower port)

    mutating func push(level: Double, port: Int32) {
        heap.append((level, port))
        var c = heap.count - 1
        while c > 0 {
            let parent = (c - 1) / 2
            guard precedes(heap[c], heap[parent]) else { break }
            heap.swapAt(c, parent)
            c = parent
        }
    }

    mutating func pop() -> (Double, Int32)? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1
                guard l < heap.count else { break }
                var best = l
                if l + 1 < heap.count && precedes(heap[l + 1], heap[l]) { best = l + 1 }
                guard precedes(heap[best], heap[p]) else { break }
                heap.swapAt(best, p)
                p = best
            }
        }
        return (top.level, top.port)
    }

    @inline(__always) func precedes(_ a: (level: Double, port: Int32), _ b: (level: Double, port: Int32)) -> Bool {
        a.level < b.level || (a.level == b.level && a.port < b.port)
    }
}
