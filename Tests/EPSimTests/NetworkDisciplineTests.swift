import EventCore
import Testing

@testable import EPSim

/// The contended disciplines against closed forms (incast, outcast, a flow limited by its
/// other port, a hot NVLink destination, a message-rate-bound SEND) and against slow
/// reference implementations written from the definitions alone.
@Suite("Network disciplines: closed forms and references")
struct NetworkDisciplineTests {
    static let bandwidth = 50.0
    static let latency = SimTime.us(4)

    static func config(
        _ kind: NetworkKind, nvlinkForLL: Bool = false, ingress: Double = .infinity, messageRate: Double = .infinity, duringSend: Bool = true
    ) -> NetworkConfig {
        NetworkConfig(
            kind: kind, nvlink: LinkConfig(bandwidthGBps: 160, latency: .us(2)), rdma: LinkConfig(bandwidthGBps: bandwidth, latency: latency),
            nvlinkForLowLatency: nvlinkForLL, fenceControlMessages: false, rdmaDataDuringSend: duringSend,
            nvlinkIngressGBps: ingress, rdmaMessageRateMps: messageRate)
    }

    /// Arrival per flow id (`operation`) under `kind`.
    static func arrivals(_ kind: NetworkKind, _ config: NetworkConfig, ranks: Int = 16, gpusPerNode: Int = 8, _ flows: [(Flow, SimTime, SimTime)])
        -> [Int32: SimTime]
    {
        let topology = Topology(cluster: Cluster(ranks: ranks, gpusPerNode: gpusPerNode), network: config)
        let delivered: [Delivery]
        switch kind {
        case .ports:
            var net = PortNetwork(config: config, topology: topology)
            delivered = NetworkModelPropertyTests.drive(&net, flows)
        case .fair:
            var net = FairNetwork(config: config, topology: topology)
            delivered = NetworkModelPropertyTests.drive(&net, flows)
        case .ideal:
            var net = IdealNetwork(config: config, topology: topology)
            delivered = NetworkModelPropertyTests.drive(&net, flows)
        }
        return Dictionary(uniqueKeysWithValues: delivered.map { ($0.flow.operation, $0.arrival) })
    }

    static func rdma(_ id: Int32, _ s: Int32, _ d: Int32, bytes: Int64, messages: Int32 = 1) -> (Flow, SimTime, SimTime) {
        (Flow(source: s, destination: d, operation: id, path: .rdma, messages: messages, bytes: bytes), .zero, .zero)
    }

    static func time(_ bytes: Int64) -> SimTime { SimTime.transfer(bytes: bytes, gigabytesPerSecond: bandwidth) }

    @Test("incast: k equal senders into one receiver all arrive at latency + k b / B", arguments: [NetworkKind.ports, .fair], [1, 3, 7])
    func incast(kind: NetworkKind, k: Int) {
        let b: Int64 = 1_000_000
        let a = Self.arrivals(kind, Self.config(kind), (0..<k).map { Self.rdma(Int32($0), Int32($0 + 1), 0, bytes: b) })
        #expect(a.count == k && a.values.allSatisfy { $0 == Self.latency + Self.time(Int64(k) * b) })
    }

    @Test("outcast: one sender to k receivers, the same on its egress", arguments: [NetworkKind.ports, .fair], [2, 5])
    func outcast(kind: NetworkKind, k: Int) {
        let b: Int64 = 1_000_000
        let a = Self.arrivals(kind, Self.config(kind), (0..<k).map { Self.rdma(Int32($0), 0, Int32($0 + 1), bytes: b) })
        #expect(a.values.allSatisfy { $0 == Self.latency + Self.time(Int64(k) * b) })
    }

    /// A sends b to X and to Y; B and C send b to X. X's ingress holds three flows, so A->X
    /// moves at B/3. Max-min gives A->Y the rest of A's egress (2B/3): it is done at 1.5 b/B,
    /// and the three into X at 3 b/B. Ports on their own keep A->Y at B/2 on A's egress while
    /// A->X is there: done at 2 b/B; X's flows at 3 b/B either way.
    @Test("a flow held back at its other port: max-min hands its share on, ports on their own do not")
    func otherPortLimits() {
        let b: Int64 = 1_200_000
        let flows = [Self.rdma(0, 8, 0, bytes: b), Self.rdma(1, 8, 1, bytes: b), Self.rdma(2, 9, 0, bytes: b), Self.rdma(3, 10, 0, bytes: b)]
        let fair = Self.arrivals(.fair, Self.config(.fair), flows)
        let ports = Self.arrivals(.ports, Self.config(.ports), flows)
        #expect(fair[1] == Self.latency + Self.time(3 * b / 2))
        #expect(ports[1] == Self.latency + Self.time(2 * b))
        for id: Int32 in [0, 2, 3] {
            #expect(fair[id] == Self.latency + Self.time(3 * b))
            #expect(ports[id] == Self.latency + Self.time(3 * b))
        }
    }

    /// k same-node peers each write b bytes to rank 0 over NVLink, SENDs lasting b / 160 GB/s:
    /// rank 0's ingress port (I GB/s) takes them in k b / I, so each flag arrives at
    /// max(SEND end, k b / I) + NVLink latency. With the port infinite, at the SEND's end.
    @Test("a hot NVLink destination: k peers share its ingress port", arguments: [NetworkKind.ports, .fair], [1, 2, 4, 7])
    func hotNVLinkDestination(kind: NetworkKind, k: Int) {
        let b: Int64 = 2_000_000
        let sendEnd = SimTime.transfer(bytes: b, gigabytesPerSecond: 160)
        func flows() -> [(Flow, SimTime, SimTime)] {
            (0..<k).map { (Flow(source: Int32($0 + 1), destination: 0, operation: Int32($0), path: .nvlink, messages: 10, bytes: b), .zero, sendEnd) }
        }
        let ingress = 300.0
        let a = Self.arrivals(kind, Self.config(kind, nvlinkForLL: true, ingress: ingress), flows())
        let expected = max(sendEnd, SimTime.transfer(bytes: Int64(k) * b, gigabytesPerSecond: ingress)) + .us(2)
        #expect(a.count == k && a.values.allSatisfy { $0 == expected })
        let free = Self.arrivals(kind, Self.config(kind, nvlinkForLL: true), flows())
        #expect(free.values.allSatisfy { $0 == sendEnd + .us(2) })
    }

    /// A flow of m messages of s bytes alone: its egress port is busy (m s + m B / R) / B, the
    /// messages' cost adding to the bytes' time; with tiny messages the rate sets the time.
    @Test("a message-rate-bound SEND: each message costs 1 / rate on top of its bytes", arguments: [NetworkKind.ports, .fair])
    func messageRate(kind: NetworkKind) {
        let rate = 10.0  // million messages per second: 100 ns each
        for (messages, size) in [(Int32(1000), Int64(64)), (Int32(200), Int64(7424))] {
            let bytes = Int64(messages) * size
            let a = Self.arrivals(kind, Self.config(kind, messageRate: rate), [Self.rdma(0, 8, 0, bytes: bytes, messages: messages)])
            let wire = Double(bytes) / Self.bandwidth * 1000 + Double(messages) * 1e6 / rate
            #expect(a[0] == Self.latency + SimTime(picos: Int64(wire.rounded(.up))))
        }
        // Two such flows from one NIC share its egress: together twice the time.
        let two = Self.arrivals(
            kind, Self.config(kind, messageRate: rate), [Self.rdma(0, 8, 0, bytes: 64_000, messages: 1000), Self.rdma(1, 8, 1, bytes: 64_000, messages: 1000)])
        let wire = 2 * (64_000 / Self.bandwidth * 1000 + 1000 * 1e6 / rate)
        #expect(two.values.allSatisfy { abs(($0 - Self.latency).picos - Int64(wire.rounded(.up))) <= 1 })
    }

    // MARK: Slow references

    /// A random set of RDMA flows on few NICs (so ports are shared), posted at a few times.
    static func randomFlows(_ g: inout SplitMix64, ranks: Int, count: Int) -> [(Flow, SimTime, SimTime)] {
        (0..<count).map { i in
            let s = g.next(below: ranks)
            var d = g.next(below: ranks)
            if d == s { d = (d + 1) % ranks }
            let start = SimTime.us(Double(g.next(below: 4) * 25))
            let messages = 1 + g.next(below: 60)
            return (
                Flow(source: Int32(s), destination: Int32(d), operation: Int32(i), path: .rdma, messages: Int32(messages), bytes: Int64(messages) * 7424),
                start, start + .us(Double(g.next(below: 30)))
            )
        }
    }

    /// Fluid reference written from the definitions: at every event every flow's rate is
    /// recomputed from scratch (ports on their own: each port splits its bandwidth evenly
    /// among the flows it has not finished serving; max-min: repeatedly find the port whose
    /// even split among its unfrozen flows is lowest, by brute force), and time moves to the
    /// next completion. Returns each flow's data-done time in picoseconds (as a Double).
    static func referenceDataDone(_ flows: [(Flow, SimTime, SimTime)], config: NetworkConfig, ranks: Int, fair: Bool) -> [Double] {
        let topology = Topology(cluster: Cluster(ranks: ranks, gpusPerNode: 8), network: config)
        let capacity = config.rdma.bandwidthGBps / 1000
        let perMessage = config.rdmaBytesPerMessage
        let n = flows.count
        let egress = flows.map { 2 * topology.nic(of: RankID(Int($0.0.source))) }
        let ingress = flows.map { 2 * topology.nic(of: RankID(Int($0.0.destination))) + 1 }
        let starts = flows.map { Double((config.rdmaDataDuringSend ? $0.1 : $0.2).picos) }
        // Work left at each port (egress counts the messages' cost); max-min tracks payload.
        var leftE = flows.map { Double($0.0.bytes) + Double($0.0.messages) * perMessage }
        var leftI = flows.map { Double($0.0.bytes) }
        var payload = flows.map { Double($0.0.bytes) }
        let coefficient = flows.map { (Double($0.0.bytes) + Double($0.0.messages) * perMessage) / Double($0.0.bytes) }
        var done = Array(repeating: -1.0, count: n)
        var t = 0.0
        while done.contains(-1) {
            let live = (0..<n).filter { done[$0] < 0 && starts[$0] <= t }
            var rateE = Array(repeating: 0.0, count: n)
            var rateI = Array(repeating: 0.0, count: n)
            if fair {
                var frozen = Set<Int>()
                var left = [Int: Double]()
                for i in live { left[egress[i], default: capacity] += 0; left[ingress[i], default: capacity] += 0 }
                while frozen.count < live.count {
                    var best = (level: Double.infinity, port: -1)
                    for (p, cap) in left.sorted(by: { $0.key < $1.key }) {
                        let w = live.filter { !frozen.contains($0) }.reduce(0.0) { $0 + (egress[$1] == p ? coefficient[$1] : ingress[$1] == p ? 1 : 0) }
                        if w > 0 && cap / w < best.level { best = (cap / w, p) }
                    }
                    for i in live where !frozen.contains(i) && (egress[i] == best.port || ingress[i] == best.port) {
                        frozen.insert(i)
                        rateE[i] = best.level * coefficient[i]
                        rateI[i] = best.level
                        left[egress[i]]! -= best.level * coefficient[i]
                        left[ingress[i]]! -= best.level
                    }
                }
            } else {
                for i in live {
                    let shareE = live.filter { egress[$0] == egress[i] && leftE[$0] > 0 }.count
                    let shareI = live.filter { ingress[$0] == ingress[i] && leftI[$0] > 0 }.count
                    rateE[i] = leftE[i] > 0 ? capacity / Double(shareE) : 0
                    rateI[i] = leftI[i] > 0 ? capacity / Double(shareI) : 0
                }
            }
            // Next event: a completion at some port, or a flow starting.
            var dt = Double.infinity
            for i in live {
                if fair {
                    dt = min(dt, payload[i] / rateI[i])
                } else {
                    if rateE[i] > 0 { dt = min(dt, leftE[i] / rateE[i]) }
                    if rateI[i] > 0 { dt = min(dt, leftI[i] / rateI[i]) }
                }
            }
            for s in starts where s > t { dt = min(dt, s - t) }
            for i in live {
                if fair {
                    payload[i] -= rateI[i] * dt
                    if payload[i] <= 1e-6 * Double(flows[i].0.bytes) { done[i] = t + dt }
                } else {
                    leftE[i] -= rateE[i] * dt
                    leftI[i] -= rateI[i] * dt
                    if leftE[i] <= 1e-6 * Double(flows[i].0.bytes) { leftE[i] = 0 }
                    if leftI[i] <= 1e-6 * Double(flows[i].0.bytes) { leftI[i] = 0 }
                    if leftE[i] == 0 && leftI[i] == 0 { done[i] = t + dt }
                }
            }
            t += dt
        }
        return done
    }

    /// The models round each completion up to a picosecond where the reference keeps
    /// fractions, so a flow may differ by the rounding of each event it went through.
    @Test("both contended models agree with the slow fluid references", arguments: [NetworkKind.ports, .fair], Array(UInt64(1)...12))
    func matchesReference(kind: NetworkKind, seed: UInt64) {
        var g = SplitMix64(seed: seed)
        let ranks = 16
        var config = Self.config(kind, messageRate: [330, 10, .infinity][g.next(below: 3)], duringSend: g.next(below: 2) == 0)
        config.nicsPerNode = [2, 8][g.next(below: 2)]
        config.rdma.latency = .zero
        let flows = Self.randomFlows(&g, ranks: ranks, count: 4 + g.next(below: 40))
        let model = Self.arrivals(kind, config, ranks: ranks, flows)
        let reference = Self.referenceDataDone(flows, config: config, ranks: ranks, fair: kind == .fair)
        for (i, (_, _, end)) in flows.enumerated() {
            let expected = max(Double(end.picos), reference[i])
            let got = Double(model[Int32(i)]!.picos)
            #expect(abs(got - expected) <= Double(flows.count) * 2, "flow \(i): \(got) ps against the reference's \(expected)")
        }
    }
}
