import EventCore
import Testing

@testable import EPSim

@Suite("The ports network")
struct PortNetworkTests {
    static let config = NetworkConfig(
        kind: .ports, nvlink: LinkConfig(bandwidthGBps: 160, latency: .us(2)), rdma: LinkConfig(bandwidthGBps: 50, latency: .us(4)),
        nvlinkForLowLatency: false, fenceControlMessages: false, rdmaDataDuringSend: true)

    /// Posts `flows` at their start times and runs the model dry; returns arrival per flow index (in `operation`).
    static func carry(_ flows: [(Flow, SimTime, SimTime)], config: NetworkConfig = config, ranks: Int = 16) -> [Int32: SimTime] {
        var net = PortNetwork(config: config, topology: Topology(cluster: Cluster(ranks: ranks), network: config))
        var deliveries: [Delivery] = []
        var pending = flows.sorted { $0.1 < $1.1 }
        var arrivals: [Int32: SimTime] = [:]
        while true {
            let nextPost = pending.first?.1
            let nextNet = net.nextEventTime()
            if let p = nextPost, nextNet.map({ p <= $0 }) ?? true {
                let (f, start, release) = pending.removeFirst()
                net.post(f, dataFrom: start, controlAt: release, deliveries: &deliveries)
            } else if let t = nextNet {
                net.advance(to: t, deliveries: &deliveries)
            } else {
                break
            }
            for d in deliveries {
                #expect(arrivals[d.flow.operation] == nil, "delivered once")
                arrivals[d.flow.operation] = d.arrival
            }
            deliveries.removeAll()
        }
        return arrivals
    }

    static func flow(_ id: Int32, _ s: Int32, _ d: Int32, _ bytes: Int64) -> Flow {
        Flow(source: s, destination: d, operation: id, path: .rdma, messages: 1, bytes: bytes)
    }

    @Test("k senders into one receiver all finish at latency + k*B/bandwidth", arguments: [1, 2, 3, 7, 15])
    func incast(k: Int) {
        let b: Int64 = 1_000_003
        let flows = (0..<k).map { (Self.flow(Int32($0), Int32($0 + 1), 0, b), SimTime.zero, SimTime.zero) }
        let arrivals = Self.carry(flows)
        let expected = SimTime.us(4) + SimTime.transfer(bytes: Int64(k) * b, gigabytesPerSecond: 50)
        #expect(arrivals.count == k)
        #expect(arrivals.values.allSatisfy { $0 == expected })
    }

    @Test("one sender to k receivers: the same on its egress", arguments: [2, 5, 15])
    func outcast(k: Int) {
        let b: Int64 = 777_777
        let flows = (0..<k).map { (Self.flow(Int32($0), 0, Int32($0 + 1), b), SimTime.zero, SimTime.zero) }
        let expected = SimTime.us(4) + SimTime.transfer(bytes: Int64(k) * b, gigabytesPerSecond: 50)
        #expect(Self.carry(flows).values.allSatisfy { $0 == expected })
    }

    @Test("disjoint flows do not slow each other; a flow alone takes latency + B/bandwidth")
    func disjoint() {
        let flows = [(Self.flow(0, 0, 1, 5_000_000), SimTime.zero, SimTime.zero), (Self.flow(1, 2, 3, 2_500_000), SimTime.us(10), SimTime.us(10))]
        let a = Self.carry(flows)
        #expect(a[0] == .us(4) + SimTime.transfer(bytes: 5_000_000, gigabytesPerSecond: 50))
        #expect(a[1] == .us(14) + SimTime.transfer(bytes: 2_500_000, gigabytesPerSecond: 50))
    }

    @Test("unequal flows sharing a port: the small one leaves first, then the big one speeds up")
    func processorSharing() {
        // 1 MB and 3 MB into one ingress at 50 GB/s: both at 25 GB/s until the small one is
        // done (2 MB served, 40 us), then the big one alone for its last 2 MB (40 us).
        let flows = [(Self.flow(0, 1, 0, 1_000_000), SimTime.zero, SimTime.zero), (Self.flow(1, 2, 0, 3_000_000), SimTime.zero, SimTime.zero)]
        let a = Self.carry(flows)
        #expect(a[0] == .us(44))
        #expect(a[1] == .us(84))
    }

    @Test("the control message waits for the end of the SEND, and the fence adds a round trip")
    func controlAndFence() {
        let late = Self.carry([(Self.flow(0, 0, 1, 1_000_000), .zero, .us(100))])
        #expect(late[0] == .us(104), "data done at 20 us, counts posted at 100 us")
        var after = Self.config
        after.rdmaDataDuringSend = false
        let afterSend = Self.carry([(Self.flow(0, 0, 1, 1_000_000), .zero, .us(100))], config: after)
        #expect(afterSend[0] == .us(124), "data moves only once the SEND ended")
        var fenced = Self.config
        fenced.fenceControlMessages = true
        let f = Self.carry([(Self.flow(0, 0, 1, 1_000_000), .zero, .zero)], config: fenced)
        #expect(f[0] == .us(20 + 8 + 4))
        let empty = Self.carry([(Self.flow(0, 0, 1, 0), .us(3), .us(5))], config: fenced)
        #expect(empty[0] == .us(9), "a zero-byte flow carries only its counts: no fence")
    }

    @Test("ideal and ports agree when no port is shared", arguments: ["during-send", "after-send"])
    func agreesWithIdeal(rdmaData: String) throws {
        // One rank per node, top-1 routing, each rank's token goes to the next rank's expert:
        // every RDMA port carries one flow. NVLink (self) flows carry nothing.
        let yaml = { (model: String) in
            """
            cluster: {ranks: 4, gpus_per_node: 1}
            model: {experts: 4, top_k: 1, placement: [1, 2, 3, 0]}
            workload: {tokens_per_rank: [1, 1, 1, 1]}
            network: {model: \(model), fence: true, rdma_data: \(rdmaData)}
            """
        }
        let ideal = try Simulation.run(try Scenario.parse(yaml: yaml("ideal"), file: "a"))
        let ports = try Simulation.run(try Scenario.parse(yaml: yaml("ports"), file: "b"))
        #expect(ideal.kernels == ports.kernels)
        #expect(ideal.stepLatency > .zero)
    }

    @Test("NVLink-in-LL: intra-node payload lengthens the SEND by its bytes over NVLink bandwidth")
    func nvlinkInSendKernel() throws {
        let yaml = """
            cluster: {ranks: 2, gpus_per_node: 2}
            model: {experts: 2, top_k: 1}
            workload: {tokens_per_rank: [4, 4]}
            network: {model: ports, nvlink: {bandwidth_gbps: 74.08, latency_us: 1}}
            costs: {dispatch_send: {fixed_us: 5, per_message_us: 0}}
            """
        let result = try Simulation.run(try Scenario.parse(yaml: yaml, file: "nv"))
        let dispatch = result.kernels.first { $0.rank == 0 && $0.kind == .dispatch }!
        // 4 messages of 7408 B over NVLink at 74.08 GB/s: 400 ns on top of the 5 us.
        #expect(dispatch.sendEnd! - dispatch.start == .us(5.4))
        #expect(dispatch.lastArrival! == dispatch.sendEnd! + .us(1))
    }
}
