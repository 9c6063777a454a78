import EventCore

/// The contended network (`ports`, the default): every rank has an RDMA egress and an
/// RDMA ingress port (its NIC), and flows that share a port share its bandwidth.
///
/// **Discipline.** Each port serves its active flows in processor sharing: with `n` flows
/// active, each progresses at `bandwidth / n`. A flow's bytes must be served by both its
/// source's egress and its destination's ingress; each port is simulated on its own (a
/// flow counts as active at a port until that port has served its bytes), and the flow's
/// data is done when the later of the two has. Data starts moving when the SEND starts
/// (`rdma_data: during-send`, the default here: DeepEP issues each token's RDMA writes as
/// the kernel processes it) or when it ends (`after-send`). The control message leaves at
/// the end of the SEND (`controlAt`), follows the data on the same queue pair, and arrives
/// `latency` after the later of the two (plus a round trip when `fence` is on and the
/// flow carried data).
///
/// Exact for a flow alone (`latency + bytes / bandwidth`), for `k` equal senders into one
/// receiver (all finish at `latency + k * bytes / bandwidth`), for one sender to `k`
/// receivers, and for a balanced all-to-all; flows on disjoint ports do not slow each
/// other. Where a flow is held back at one port, its share at the other is not handed to
/// others (unlike max-min fairness), so such mixes come out slightly pessimistic.
///
/// NVLink payload (same-node peers when `nvlink_for_ll` is on, and a rank's copy to
/// itself) is written by the SEND kernel's SMs (DeepEP's NVLink-in-LL mode), so the engine
/// lengthens the SEND by those bytes over the NVLink bandwidth and this model carries only
/// the control message, `nvlink.latency` after the SEND ends.
///
/// Each port keeps a virtual clock `V` (bytes served to each active flow so far) and a
/// min-heap of its flows' finishing values of `V`, so a flow costs O(log n) per port.
public struct PortNetwork: NetworkModel {
    public static var movesNVLinkInSendKernel: Bool { true }

    struct Port {
        /// Bytes served to each active flow since the port was created.
        var virtual: Double = 0
        var lastUpdate: SimTime = .zero
        /// (finishing virtual time, flow slot), a binary min-heap on the first.
        var heap: [(finish: Double, flow: Int32)] = []
        /// The pending departure time, or -1.
        var next: Int64 = -1
    }

    struct PendingFlow {
        var flow: Flow
        var controlAt: SimTime
        var portsLeft: UInt8
        var dataDone: SimTime
    }

    let config: NetworkConfig
    let bandwidthGBps: Double
    /// Bytes per picosecond.
    let rate: Double
    /// `ports[2 * rank]` egress, `ports[2 * rank + 1]` ingress.
    var ports: [Port]
    var pending: [PendingFlow] = []
    var freeSlots: [Int32] = []
    /// Departures, lazily invalidated: an entry counts only while it equals its port's `next`.
    var departures = EventQueue<Int32>()

    public init(config: NetworkConfig, ranks: Int) {
        self.config = config
        bandwidthGBps = config.rdma.bandwidthGBps
        rate = config.rdma.bandwidthGBps / 1000
        ports = Array(repeating: Port(), count: 2 * ranks)
    }

    public mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery]) {
        if flow.path == .nvlink {
            deliveries.append(Delivery(flow: flow, posted: release, arrival: release + config.nvlink.latency))
            return
        }
        if flow.bytes == 0 || bandwidthGBps.isInfinite {
            var arrival = release + config.rdma.latency
            if flow.bytes > 0 && config.fenceControlMessages { arrival += config.rdma.latency + config.rdma.latency }
            deliveries.append(Delivery(flow: flow, posted: release, arrival: arrival))
            return
        }
        let slot: Int32
        let dataStart = config.rdmaDataDuringSend ? start : release
        let entry = PendingFlow(flow: flow, controlAt: release, portsLeft: 2, dataDone: dataStart)
        if let free = freeSlots.popLast() {
            slot = free
            pending[Int(slot)] = entry
        } else {
            slot = Int32(pending.count)
            pending.append(entry)
        }
        add(slot, bytes: flow.bytes, to: 2 * Int(flow.source), at: dataStart)
        add(slot, bytes: flow.bytes, to: 2 * Int(flow.destination) + 1, at: dataStart)
    }

    public mutating func nextEventTime() -> SimTime? {
        while let t = departures.nextTime {
            let (_, port) = departures.pop()!
            if ports[Int(port)].next == t.picos {
                departures.push(port, at: t)
                return t
            }
        }
        return nil
    }

    public mutating func advance(to time: SimTime, deliveries: inout [Delivery]) {
        while let t = departures.nextTime, t == time {
            let port = Int(departures.pop()!.payload)
            guard ports[port].next == time.picos else { continue }
            depart(port: port, at: time, deliveries: &deliveries)
        }
    }

    // MARK: Ports

    /// Serves the port's active flows up to `time`.
    mutating func catchUp(_ p: Int, to time: SimTime) {
        let active = ports[p].heap.count
        if active > 0 {
            ports[p].virtual += Double((time - ports[p].lastUpdate).picos) * rate / Double(active)
        }
        ports[p].lastUpdate = time
    }

    mutating func add(_ slot: Int32, bytes: Int64, to p: Int, at time: SimTime) {
        catchUp(p, to: time)
        heapPush(p, (ports[p].virtual + Double(bytes), slot))
        schedule(p)
    }

    /// Schedules the port's next departure: the flow with the least left, when every
    /// active flow gets `bandwidth / n`.
    mutating func schedule(_ p: Int) {
        guard let first = ports[p].heap.first else {
            ports[p].next = -1
            return
        }
        // Bytes the port must serve in all before the first flow is done.
        let work = max(0, first.finish - ports[p].virtual) * Double(ports[p].heap.count)
        let at = ports[p].lastUpdate.picos + Int64((work * 1000 / bandwidthGBps).rounded(.up))
        if at != ports[p].next {
            ports[p].next = at
            departures.push(Int32(p), at: SimTime(picos: at))
        }
    }

    mutating func depart(port p: Int, at time: SimTime, deliveries: inout [Delivery]) {
        let finish = ports[p].heap[0].finish
        ports[p].virtual = finish
        ports[p].lastUpdate = time
        // Every flow that finishes with the first leaves now.
        while let top = ports[p].heap.first, top.finish <= finish {
            heapPop(p)
            let slot = Int(top.flow)
            pending[slot].portsLeft -= 1
            pending[slot].dataDone = max(pending[slot].dataDone, time)
            if pending[slot].portsLeft == 0 {
                let f = pending[slot]
                var ready = f.dataDone
                if config.fenceControlMessages { ready += config.rdma.latency + config.rdma.latency }
                deliveries.append(Delivery(flow: f.flow, posted: f.controlAt, arrival: max(f.controlAt, ready) + config.rdma.latency))
                freeSlots.append(top.flow)
            }
        }
        ports[p].next = -1
        schedule(p)
    }

    // MARK: Heap

    mutating func heapPush(_ p: Int, _ item: (finish: Double, flow: Int32)) {
        ports[p].heap.append(item)
        var child = ports[p].heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            let a = ports[p].heap[child]
            let b = ports[p].heap[parent]
            guard a.finish < b.finish || (a.finish == b.finish && a.flow < b.flow) else { break }
            ports[p].heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func heapPop(_ p: Int) {
        let last = ports[p].heap.removeLast()
        guard !ports[p].heap.isEmpty else { return }
        ports[p].heap[0] = last
        var parent = 0
        let n = ports[p].heap.count
        while true {
            var child = 2 * parent + 1
            guard child < n else { break }
            if child + 1 < n {
                let l = ports[p].heap[child]
                let r = ports[p].heap[child + 1]
                if r.finish < l.finish || (r.finish == l.finish && r.flow < l.flow) { child += 1 }
            }
            let c = ports[p].heap[child]
            let x = ports[p].heap[parent]
            guard c.finish < x.finish || (c.finish == x.finish && c.flow < x.flow) else { break }
            ports[p].heap.swapAt(child, parent)
            parent = child
        }
    }
}
