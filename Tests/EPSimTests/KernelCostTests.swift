import EventCore
import Foundation
import Testing

@testable import EPSim

/// The measured model's terms, each against its closed form: the launch gap, a rank's copy to
/// itself, and the one warp group per (peer, local expert) pair.
@Suite("Launch gap, self copy and warp-group pairs")
struct KernelCostTests {
    static func run(_ yaml: String) throws -> RunResult { try Simulation.run(try Scenario.parse(yaml: yaml, file: "test.yaml")) }

    @Test("a launch gap idles the stream before every kernel but a zero-duration compute kernel; the step grows by the gaps exactly")
    func launchGap() throws {
        var text = ScenarioText()
        text.attn1 = [0]
        let base = try Simulation.run(try text.scenario())
        let gapped = try Self.run(text.yaml + "\n  launch_gap_us: 2")
        // ATTN0, SHARED, DISPATCH, MLP, COMBINE launch; ATTN1 (0 us) stands for no kernel.
        #expect(gapped.stepLatency == base.stepLatency + .us(5 * 2))
        for r in 0..<2 {
            let ks = gapped.kernels.filter { $0.rank == r }.sorted { $0.start < $1.start || ($0.start == $1.start && $0.end < $1.end) }
            #expect(ks[0].start == .us(2))
            for (prev, k) in zip(ks, ks.dropFirst()) {
                let gap: SimTime = k.kind.isCompute && k.duration == .zero ? .zero : .us(2)
                #expect(k.start == prev.end + gap, "\(k.kind) on rank \(r)")
            }
        }
        let path = try #require(CriticalPath(gapped))
        #expect(path.isContiguous && path.length == gapped.stepLatency)
        #expect(path.links.contains { $0.kind == .launch })
        // Exposed communication counts no gap: the same as without gaps, one stream.
        for r in 0..<2 {
            let g = gapped.rankStep(rank: r, step: 0), b = base.rankStep(rank: r, step: 0)
            #expect(g.launchGaps == .us(10) && g.exposedCommunication == b.exposedCommunication)
        }
    }

    @Test("with a launch gap on two streams, every launch link of the critical path is one gap long")
    func launchGapTwoStreams() throws {
        let yaml = """
            cluster: {ranks: 2}
            model: {experts: 16, top_k: 8}
            schedule: {name: two, body: ATTN0(A) ATTN1(A) SEND-D(A)@comm SHARED(A) RECV-D(A)@comm MLP(A) SEND-C(A)@comm RECV-C(A)@comm}
            costs: {launch_gap_us: 5}
            """
        let result = try Self.run(yaml)
        let path = try #require(CriticalPath(result))
        #expect(path.isContiguous && path.length == result.stepLatency)
        for link in path.links where link.kind == .launch { #expect(link.duration == .us(5), "\(link.kernel.kind)") }
        #expect(path.links.contains { $0.kind == .kernel && $0.kernel.kind == .mlp })
    }

    @Test("the SEND writes NVLink peers at the NVLink rate and the rank itself at its own, rounded once")
    func selfCopy() throws {
        let yaml = """
            cluster: {ranks: 2, gpus_per_node: 2}
            model: {experts: 16, top_k: 8}
            workload: {tokens_per_rank: [64, 64], routing: uniform, seed: 3}
            network: {model: ports, nvlink: {bandwidth_gbps: 100, latency_us: 1}, self_copy_gbps: 700}
            costs: {dispatch_send: {fixed_us: 5, per_message_us: 0.01}}
            """
        let s = try Scenario.parse(yaml: yaml, file: "t.yaml")
        let result = try Simulation.run(s)
        let routing = RoutingGenerator(workload: s.workload, model: s.model).route(step: 0, layer: 0, microBatches: 1).microBatches[0]
        for r in 0..<2 {
            let k = result.kernels.first { $0.rank == r && $0.kind == .dispatch }!
            let selfBytes = Double(routing.pairCounts[r * 2 + r]) * 7408
            let peerBytes = Double(routing.pairCounts[r * 2 + (1 - r)]) * 7408
            let stores = SimTime(picos: Int64((peerBytes * 1000 / 100 + selfBytes * 1000 / 700).rounded(.up)))
            #expect(k.sendEnd! - k.start == .us(5) + SimTime(picos: SimTime.us(0.01).picos * 512) + stores)
        }
    }

    @Test("a hot (source, expert) pair is copied and sent by one warp group: RECV-D and SEND-C take its bytes at the pair rate")
    func warpGroupPair() throws {
        // Every token of both ranks selects expert 0 (on rank 0): 10 rows per source for one pair.
        var trace = "layer,rank,token,e0,e1\n"
        for r in 0..<2 { for t in 0..<10 { trace += ",\(r),\(t),0,\(1 + t)\n" } }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pair-\(UUID().uuidString).csv")
        try trace.write(to: file, atomically: true, encoding: .utf8)
        let yaml = """
            cluster: {ranks: 2, gpus_per_node: 2}
            model: {experts: 16, top_k: 2}
            workload: {routing: {kind: trace, file: \(file.path)}}
            schedule: {name: hook, body: ATTN0(A) ATTN1(A) SHARED(A) SEND-D(A) RECV-D(A) MLP(A) SEND-C(A) RECV-C(A)}
            network: {model: ideal}
            costs:
              dispatch_recv: {fixed_us: 3, copy_gbps: 1000, pair_gbps: 1}
              combine_send: {fixed_us: 4, per_message_us: 0.01, pair_gbps: 2}
            """
        let result = try Self.run(yaml)
        let recv0 = result.kernels.first { $0.rank == 0 && $0.kind == .recvDispatch }!
        #expect(recv0.end - max(recv0.start, recv0.lastArrival!) == .us(3) + SimTime.transfer(bytes: 10 * 7408, gigabytesPerSecond: 1))
        let send0 = result.kernels.first { $0.rank == 0 && $0.kind == .sendCombine }!
        #expect(send0.duration == .us(4) + SimTime.transfer(bytes: 10 * 14336, gigabytesPerSecond: 2))
        // Rank 1's pairs hold one row each: one row at the pair rate still beats its bulk copy.
        let recv1 = result.kernels.first { $0.rank == 1 && $0.kind == .recvDispatch }!
        #expect(recv1.bytesIn == 6 * 7408)
        #expect(recv1.end - max(recv1.start, recv1.lastArrival!) == .us(3) + SimTime.transfer(bytes: 7408, gigabytesPerSecond: 1))
    }

    @Test("pair_gbps belongs to the dispatch RECV and the combine SEND only")
    func pairKeyPlaces() throws {
        #expect(throws: ScenarioError.self) {
            _ = try Scenario.parse(yaml: "cluster: {ranks: 2}\ncosts: {dispatch_send: {pair_gbps: 10}}", file: "t.yaml")
        }
        #expect(throws: ScenarioError.self) {
            _ = try Scenario.parse(yaml: "cluster: {ranks: 2}\ncosts: {combine_recv: {pair_gbps: 10}}", file: "t.yaml")
        }
    }
}

/// Every flow posted is delivered exactly once, on every network model and schedule preset
/// (normal mode's count exchange included: a receive that completes inside a delivery posts
/// new flows, which must not be delivered twice nor recurse).
@Suite("Deliveries")
struct DeliveryTests {
    static let cases: [(network: String, schedule: String, ranks: Int, seed: UInt64)] =
        ["ideal", "ports"].flatMap { net in
            ["none", "deepseek-decode", "deepseek-prefill"].flatMap { sched in [(net, sched, 8, 1), (net, sched, 16, 2)] as [(String, String, Int, UInt64)] }
        }

    @Test("each flow is delivered once", arguments: cases.indices)
    func once(_ i: Int) throws {
        let c = Self.cases[i]
        let yaml = """
            cluster: {ranks: \(c.ranks), gpus_per_node: 4}
            model: {experts: \(c.ranks * 2), top_k: 4, moe_layers: 2}
            workload: {tokens_per_rank: {distribution: uniform, min: 0, max: 24}, routing: uniform, seed: \(c.seed)}
            schedule: \(c.schedule)
            network: {model: \(c.network)}
            costs: {launch_gap_us: 0.5}
            """
        let result = try Simulation.run(try Scenario.parse(yaml: yaml, file: "t.yaml"), options: SimulationOptions(timeline: .full, recordFlows: true))
        #expect(result.flows.count == result.flowCount)
        var seen = Set<[Int32]>()
        for f in result.flows { #expect(seen.insert([f.flow.operation, f.flow.source, f.flow.destination]).inserted) }
    }
}
