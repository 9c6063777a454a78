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
        /// Active flows (the heap's size).
        var active: Int = 0
        /// The desired next departure time, or -1.
        var next: Int64 = -1
        /// The time of the one valid queue entry for this port, or -1. Entries are pushed
        /// only when the departure moves earlier; when it moves later the entry fires early
        /// and is pushed again, so a port does not flood the queue.
        var queued: Int64 = -1
    }

    struct PendingFlow {
        var flow: Flow
        var started: SimTime
        var controlAt: SimTime
        var portsLeft: UInt8
        var dataDone: SimTime
    }

    /// One entry of a port's heap: the virtual time at which the flow is done there.
    struct HeapEntry {
        var finish: Double
        var flow: Int32

        @inline(__always) func precedes(_ other: HeapEntry) -> Bool {
            finish < other.finish || (finish == other.finish && flow < other.flow)
        }
    }

    let config: NetworkConfig
    let bandwidthGBps: Double
    /// Bytes per picosecond.
    let rate: Double
    /// `ports[2 * rank]` egress, `ports[2 * rank + 1]` ingress.
    var ports: [Port]
    /// Each port's heap lives in its own fixed-capacity region of one allocation, so no
    /// per-port array (and no copy-on-write check) sits in the hot path. The engine owns the
    /// network and never copies it; `owner` frees the allocation.
    var heapStorage: UnsafeMutablePointer<HeapEntry>
    var capacity: Int
    var owner: StorageOwner
    var pending: [PendingFlow] = []
    var freeSlots: [Int32] = []
    /// Departures, lazily invalidated: an entry counts only while it equals its port's `queued`.
    var departures = EventQueue<Int32>()
    public private(set) var eventCount = 0

    public init(config: NetworkConfig, ranks: Int) {
        self.config = config
        bandwidthGBps = config.rdma.bandwidthGBps
        rate = config.rdma.bandwidthGBps / 1000
        ports = Array(repeating: Port(), count: 2 * ranks)
        // A port holds at most the flows of the few operations in flight (DeepEP's double
        // buffering bounds them); start with room for four operations and grow if needed.
        capacity = max(4 * ranks, 16)
        heapStorage = .allocate(capacity: capacity * 2 * ranks)
        owner = StorageOwner(heapStorage)
    }

    /// Frees the heap allocation when the last copy of the network goes away.
    final class StorageOwner {
        let pointer: UnsafeMutablePointer<HeapEntry>
        init(_ pointer: UnsafeMutablePointer<HeapEntry>) { self.pointer = pointer }
        deinit { pointer.deallocate() }
    }

    public mutating func post(_ flow: Flow, dataFrom start: SimTime, controlAt release: SimTime, deliveries: inout [Delivery]) {
        if flow.path == .nvlink {
            deliveries.append(Delivery(flow: flow, posted: release, arrival: release + config.nvlink.latency, started: start))
            return
        }
        if flow.bytes == 0 || bandwidthGBps.isInfinite {
            var arrival = release + config.rdma.latency
            if flow.bytes > 0 && config.fenceControlMessages { arrival += config.rdma.latency + config.rdma.latency }
            deliveries.append(Delivery(flow: flow, posted: release, arrival: arrival, started: start))
            return
        }
        let slot: Int32
        let dataStart = config.rdmaDataDuringSend ? start : release
        let entry = PendingFlow(flow: flow, started: start, controlAt: release, portsLeft: 2, dataDone: dataStart)
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
        while let (t, port) = departures.first {
            let p = Int(port)
            if ports[p].queued != t.picos {
                departures.removeFirst()
                continue
            }
            if ports[p].next == t.picos { return t }
            // The departure moved later since this entry was queued: queue it again.
            departures.removeFirst()
            ports[p].queued = -1
            if ports[p].next >= 0 {
                ports[p].queued = ports[p].next
                departures.push(port, at: SimTime(picos: ports[p].next))
            }
        }
        return nil
    }

    public mutating func advance(to time: SimTime, deliveries: inout [Delivery]) {
        while let (t, port) = departures.first, t == time {
            departures.removeFirst()
            let p = Int(port)
            guard ports[p].queued == time.picos else { continue }
            ports[p].queued = -1
            if ports[p].next == time.picos {
                depart(port: p, at: time, deliveries: &deliveries)
            } else if ports[p].next >= 0 {
                ports[p].queued = ports[p].next
                departures.push(port, at: SimTime(picos: ports[p].next))
            }
        }
    }

    // MARK: Ports

    mutating func add(_ slot: Int32, bytes: Int64, to p: Int, at time: SimTime) {
        // Serve the port's active flows up to `time`.
        let active = ports[p].active
        if active > 0 {
            ports[p].virtual += Double((time - ports[p].lastUpdate).picos) * rate / Double(active)
        }
        ports[p].lastUpdate = time
        heapPush(p, HeapEntry(finish: ports[p].virtual + Double(bytes), flow: slot))
        schedule(p)
    }

    /// Schedules the port's next departure: the flow with the least left, when every
    /// active flow gets `bandwidth / n`.
    mutating func schedule(_ p: Int) {
        let active = ports[p].active
        guard active > 0 else {
            ports[p].next = -1
            return
        }
        // Bytes the port must serve in all before the first flow is done.
        let work = max(0, heapStorage[p * capacity].finish - ports[p].virtual) * Double(active)
        let at = ports[p].lastUpdate.picos + Int64((work * 1000 / bandwidthGBps).rounded(.up))
        ports[p].next = at
        if ports[p].queued < 0 || at < ports[p].queued {
            ports[p].queued = at
            departures.push(Int32(p), at: SimTime(picos: at))
        }
    }

    mutating func depart(port p: Int, at time: SimTime, deliveries: inout [Delivery]) {
        eventCount += 1
        let finish = heapStorage[p * capacity].finish
        ports[p].virtual = finish
        ports[p].lastUpdate = time
        // Every flow that finishes with the first leaves now.
        while ports[p].active > 0 && heapStorage[p * capacity].finish <= finish {
            let slot = Int(heapStorage[p * capacity].flow)
            heapPop(p)
            pending[slot].portsLeft -= 1
            pending[slot].dataDone = max(pending[slot].dataDone, time)
            if pending[slot].portsLeft == 0 {
                let f = pending[slot]
                var ready = f.dataDone
                if config.fenceControlMessages { ready += config.rdma.latency + config.rdma.latency }
                deliveries.append(
                    Delivery(flow: f.flow, posted: f.controlAt, arrival: max(f.controlAt, ready) + config.rdma.latency, started: f.started))
                freeSlots.append(Int32(slot))
            }
        }
        ports[p].next = -1
        schedule(p)
    }

    // MARK: Heap (4-ary: shallower than binary, and pops dominate)

    mutating func grow() {
        let ranks = ports.count / 2
        let bigger = capacity * 2
        let storage = UnsafeMutablePointer<HeapEntry>.allocate(capacity: bigger * 2 * ranks)
        for p in 0..<(2 * ranks) {
            (storage + p * bigger).moveInitialize(from: heapStorage + p * capacity, count: ports[p].active)
        }
        heapStorage = storage
        owner = StorageOwner(storage)
        capacity = bigger
    }

    mutating func heapPush(_ p: Int, _ item: HeapEntry) {
        if ports[p].active == capacity { grow() }
        let h = heapStorage + p * capacity
        var child = ports[p].active
        ports[p].active += 1
        while child > 0 {
            let parent = (child - 1) >> 2
            guard item.precedes(h[parent]) else { break }
            h[child] = h[parent]
            child = parent
        }
        h[child] = item
    }

    mutating func heapPop(_ p: Int) {
        let h = heapStorage + p * capacity
        let n = ports[p].active - 1
        ports[p].active = n
        guard n > 0 else { return }
        let item = h[n]
        var parent = 0
        while true {
            let first = 4 * parent + 1
            guard first < n else { break }
            var best = first
            let last = min(first + 4, n)
            var c = first + 1
            while c < last {
                if h[c].precedes(h[best]) { best = c }
                c += 1
            }
            guard h[best].precedes(item) else { break }
            h[parent] = h[best]
            parent = best
        }
        h[parent] = item
    }
}
