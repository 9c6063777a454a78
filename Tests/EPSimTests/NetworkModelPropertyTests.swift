import EventCore
import Testing

@testable import EPSim

/// Rules every ``NetworkModel`` must keep, checked on each conforming model by one generic
/// driver: every posted flow is delivered exactly once, with its own particulars; no
/// delivery arrives before its control message is released, nor before it would have
/// arrived alone on its links; a flow alone arrives exactly at its uncontended arrival;
/// and the model is deterministic. A new network model gets these checks by adding one
/// case to `properties`.
@Suite("Network model properties (every model)")
struct NetworkModelPropertyTests {

    static func config(_ g: inout SplitMix64, kind: NetworkKind) -> NetworkConfig {
        NetworkConfig(
            kind: kind,
            nvlink: LinkConfig(bandwidthGBps: [160, 413, .infinity][g.next(below: 3)], latency: .us(Double(g.next(below: 300)) / 100)),
            rdma: LinkConfig(bandwidthGBps: [25, 50, .infinity][g.next(below: 3)], latency: .us(Double(g.next(below: 800)) / 100)),
            nvlinkForLowLatency: g.next(below: 2) == 0, fenceControlMessages: g.next(below: 3) == 0,
            rdmaDataDuringSend: g.next(below: 2) == 0, nicsPerNode: [1, 2, 4][g.next(below: 3)],
            nvlinkIngressGBps: [450, 200, 100, .infinity][g.next(below: 4)], rdmaMessageRateMps: [330, 10, .infinity][g.next(below: 3)])
    }

    /// A random set of flows: (flow, SEND start, SEND end); flow ids in `operation`.
    static func flows(_ g: inout SplitMix64, topology: Topology, count: Int) -> [(Flow, SimTime, SimTime)] {
        (0..<count).map { i in
            let s = g.next(below: topology.ranks)
            let d = g.next(below: topology.ranks)
            let start = SimTime.us(Double(g.next(below: 5000)) / 100)
            let end = start + .us(Double(g.next(below: 2000)) / 100)
            let messages = g.next(below: 4) == 0 ? 0 : 1 + g.next(below: 200)
            let flow = Flow(
                source: Int32(s), destination: Int32(d), operation: Int32(i), path: topology.path(from: RankID(s), to: RankID(d)),
                messages: Int32(messages), bytes: Int64(messages) * 7424)
            return (flow, start, end)
        }
    }

    /// Drives `net` as the engine does: posts in order of SEND start, advances the model
    /// whenever its next event comes first. Returns every delivery in delivery order.
    static func drive<Net: NetworkModel & ~Copyable>(_ net: inout Net, _ flows: [(Flow, SimTime, SimTime)]) -> [Delivery] {
        var pending = flows.sorted { ($0.1, $0.0.operation) < ($1.1, $1.0.operation) }[...]
        var out: [Delivery] = []
        var deliveries: [Delivery] = []
        var steps = 0
        while steps < 1_000_000 {
            steps += 1
            let next = net.nextEventTime()
            if let (f, start, end) = pending.first, next.map({ start <= $0 }) ?? true {
                pending.removeFirst()
                net.post(f, dataFrom: start, controlAt: end, deliveries: &deliveries)
            } else if let t = next {
                net.advance(to: t, deliveries: &deliveries)
            } else {
                break
            }
            out += deliveries
            deliveries.removeAll()
        }
        return out
    }

    static func check<Net: NetworkModel & ~Copyable>(_ make: (NetworkConfig, Topology) -> Net, kind: NetworkKind, seed: UInt64) {
        var g = SplitMix64(seed: seed)
        let config = config(&g, kind: kind)
        let gpusPerNode = [4, 8][g.next(below: 2)]
        let topology = Topology(cluster: Cluster(ranks: 2 + g.next(below: 15), gpusPerNode: gpusPerNode), network: config)
        let flows = flows(&g, topology: topology, count: 1 + g.next(below: 120))
        var net = make(config, topology)
        let delivered = drive(&net, flows)
        #expect(delivered.count == flows.count, "every flow delivered")
        var seen = Set<Int32>()
        for d in delivered {
            #expect(seen.insert(d.flow.operation).inserted, "flow \(d.flow.operation) delivered once")
            let (f, start, end) = flows[Int(d.flow.operation)]
            #expect(d.flow == f && d.started == start && d.posted == end, "a delivery carries its own flow")
            #expect(d.arrival >= end, "arrives after its control message leaves")
            let alone = net.uncontendedArrival(f, started: start, posted: end)
            #expect(d.arrival >= alone, "never earlier than alone on its links")
        }
        // Alone: exactly the uncontended arrival.
        for (f, start, end) in flows.prefix(10) {
            var single = make(config, topology)
            let one = drive(&single, [(f, start, end)])
            #expect(one.count == 1 && one.first?.arrival == single.uncontendedArrival(f, started: start, posted: end))
        }
        // Deterministic.
        var again = make(config, topology)
        #expect(drive(&again, flows) == delivered)
    }

    @Test("delivered once, never early, exact alone, deterministic", arguments: NetworkKind.allCases, Array(UInt64(1)...25))
    func properties(kind: NetworkKind, seed: UInt64) {
        switch kind {
        case .ideal: Self.check({ IdealNetwork(config: $0, topology: $1) }, kind: kind, seed: seed)
        case .ports: Self.check({ PortNetwork(config: $0, topology: $1) }, kind: kind, seed: seed)
        case .fair: Self.check({ FairNetwork(config: $0, topology: $1) }, kind: kind, seed: seed)
        }
    }

    @Test("ranks sharing a NIC share its ports; one NIC per GPU keeps them apart")
    func sharedNIC() {
        // Two ranks of one node each send 1 MB to a rank of another node (NVLink off): with one
        // NIC per GPU the two egress ports are separate, with one NIC per node they share it.
        let base = NetworkConfig(
            kind: .ports, nvlink: LinkConfig(bandwidthGBps: 160, latency: .us(2)), rdma: LinkConfig(bandwidthGBps: 50, latency: .us(4)),
            nvlinkForLowLatency: false, fenceControlMessages: false, rdmaDataDuringSend: true)
        func arrivals(nics: Int?) -> [SimTime] {
            var config = base
            config.nicsPerNode = nics
            let topology = Topology(cluster: Cluster(ranks: 8, gpusPerNode: 4), network: config)
            var net = PortNetwork(config: config, topology: topology)
            let flows = [
                (Flow(source: 0, destination: 4, operation: 0, path: .rdma, messages: 1, bytes: 1_000_000), SimTime.zero, SimTime.zero),
                (Flow(source: 1, destination: 5, operation: 1, path: .rdma, messages: 1, bytes: 1_000_000), SimTime.zero, SimTime.zero),
            ]
            return Self.drive(&net, flows).sorted { $0.flow.operation < $1.flow.operation }.map(\.arrival)
        }
        #expect(arrivals(nics: nil) == [.us(24), .us(24)], "4 us + 1 MB / 50 GB/s each")
        #expect(arrivals(nics: 1) == [.us(44), .us(44)], "both 1 MB through one egress and one ingress: 2 MB / 50 GB/s")
        #expect(arrivals(nics: 2) == [.us(44), .us(44)], "ranks 0 and 1 share NIC 0 of their node; 4 and 5 NIC 0 of theirs")
        let t = Topology(cluster: Cluster(ranks: 8, gpusPerNode: 4), network: { var c = base; c.nicsPerNode = 2; return c }())
        #expect((0..<8).map { t.nic(of: RankID($0)) } == [0, 0, 1, 1, 2, 2, 3, 3])
        #expect(t.nicCount == 4)
    }

    @Test("nics_per_node equal to gpus_per_node is the default itself: the same scenario")
    func explicitDefault() throws {
        let plain = try Scenario.parse(yaml: "cluster: {ranks: 16, gpus_per_node: 8}\nnetwork: {model: ports}\n", file: "a.yaml")
        let explicit = try Scenario.parse(yaml: "cluster: {ranks: 16, gpus_per_node: 8}\nnetwork: {model: ports, nics_per_node: 8}\n", file: "b.yaml")
        #expect(plain.network == explicit.network)
    }
}
