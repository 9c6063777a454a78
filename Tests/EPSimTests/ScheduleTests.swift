import EventCore
import Foundation
import Testing

@testable import EPSim

/// A scenario with every communication cost zero: instant network, free SEND and RECV.
func freeCommunicationYAML(ranks: Int, layers: Int, tokens: String, schedule: String, costs: String, extra: String = "") -> String {
    """
    cluster: {ranks: \(ranks), gpus_per_node: 8}
    model: {experts: \(ranks * 2), top_k: 2, moe_layers: \(layers)}
    workload: {tokens_per_rank: \(tokens)}
    schedule: \(schedule)
    network:
      model: ideal
      nvlink: {bandwidth_gbps: infinite, latency_us: 0}
      rdma: {bandwidth_gbps: infinite, latency_us: 0}
    costs:
    \(costs)
      dispatch_send: {fixed_us: 0, per_message_us: 0}
      combine_send: {fixed_us: 0, per_message_us: 0}
      dispatch_recv: {fixed_us: 0, copy_gbps: infinite}
      combine_recv: {fixed_us: 0, copy_gbps: infinite}
    \(extra)
    """
}

@Suite("Two micro-batches: deepseek-decode")
struct DecodeScheduleTests {
    @Test("with free communication and equal ranks, a step is exactly one rank's compute")
    func freeCommunicationIsComputeSum() throws {
        let yaml = freeCommunicationYAML(
            ranks: 4, layers: 3, tokens: "[64, 64, 64, 64]", schedule: "deepseek-decode",
            costs: """
                  attn0_us: 11.5
                  attn1_us: 23.25
                  shared_us: 7
                  gemm_us: 31
                """)
        let result = try Simulation.run(try Scenario.parse(yaml: yaml, file: "free.yaml"))
        let perRankCompute = SimTime.us(3 * (11.5 + 23.25 + 7 + 31))
        #expect(result.stepLatency == perRankCompute)
        for r in result.rankSteps { #expect(r.wait == .zero) }
    }

    /// Two ranks, one layer, free communication; rank 0 has a slow GEMM, rank 1 a slow
    /// attention. Each rank's own compute sums to 100 us, but the coupling through
    /// arrivals stretches the step to 115 us. Every start and end below is worked out by
    /// hand in the order of the preset.
    static let coupledYAML = freeCommunicationYAML(
        ranks: 2, layers: 1, tokens: "[2, 2]", schedule: "deepseek-decode",
        costs: """
              attn0_us: 10
              attn1_us: [20, 60]
              shared_us: 10
              gemm_us: {a: [30, 10], b: [30, 10]}
            """)

    @Test("unequal ranks: the step is longer than any rank's own compute, kernel by kernel as computed by hand")
    func coupledTimeline() throws {
        let result = try Simulation.run(try Scenario.parse(yaml: Self.coupledYAML, file: "coupled.yaml"))
        let expected: [[(String, Double, Double)]] = [
            [
                ("ATTN0(A)", 0, 5), ("ATTN1(A)", 5, 15), ("SEND-D(A)", 15, 15), ("SHARED(A)", 15, 20), ("ATTN0(B)", 20, 25),
                ("RECV-D(A)", 25, 35), ("MLP(A)", 35, 65), ("SEND-C(A)", 65, 65), ("ATTN1(B)", 65, 75), ("RECV-C(A)", 75, 75),
                ("SEND-D(B)", 75, 75), ("SHARED(B)", 75, 80), ("RECV-D(B)", 80, 85), ("MLP(B)", 85, 115), ("SEND-C(B)", 115, 115),
                ("RECV-C(B)", 115, 115),
            ],
            [
                ("ATTN0(A)", 0, 5), ("ATTN1(A)", 5, 35), ("SEND-D(A)", 35, 35), ("SHARED(A)", 35, 40), ("ATTN0(B)", 40, 45),
                ("RECV-D(A)", 45, 45), ("MLP(A)", 45, 55), ("SEND-C(A)", 55, 55), ("ATTN1(B)", 55, 85), ("RECV-C(A)", 85, 85),
                ("SEND-D(B)", 85, 85), ("SHARED(B)", 85, 90), ("RECV-D(B)", 90, 90), ("MLP(B)", 90, 100), ("SEND-C(B)", 100, 100),
                ("RECV-C(B)", 100, 115),
            ],
        ]
        for r in 0..<2 {
            let got = result.kernels.filter { $0.rank == Int32(r) }.map { ("\($0.kind)(\($0.microBatch))", $0.start, $0.end) }
            #expect(got.count == expected[r].count)
            for (g, e) in zip(got, expected[r]) {
                #expect(g.0 == e.0 && g.1 == .us(e.1) && g.2 == .us(e.2), "rank \(r): got \(g.0) \(g.1)-\(g.2), expected \(e)")
            }
        }
        #expect(result.stepLatency == .us(115))
        #expect(result.rankStep(rank: 0, step: 0).wait == .us(15))
        #expect(result.rankStep(rank: 1, step: 0).wait == .us(15))
        let blocked = result.kernels.filter { $0.wait > .zero }.map { "\($0.rank):\($0.kind)(\($0.microBatch))<-\($0.blocker)" }
        #expect(blocked == ["0:RECV-D(A)<-1", "0:RECV-D(B)<-1", "1:RECV-C(B)<-0"])
    }

    /// Two ranks on one node; 14336 B over 14.336 GB/s take exactly 1 us; latency 5 us.
    static func windowYAML(attn1B: Double) -> String {
        """
        cluster: {ranks: 2, gpus_per_node: 8}
        model: {experts: 2, top_k: 1}
        workload: {tokens_per_rank: [2, 2]}
        schedule: deepseek-decode
        network:
          model: ideal
          nvlink: {bandwidth_gbps: 14.336, latency_us: 5}
        costs:
          attn0_us: 20
          attn1_us: {a: 20, b: \(attn1B)}
          shared_us: 20
          gemm_us: {a: 10, b: 10}
          dispatch_send: {fixed_us: 0, per_message_us: 0}
          combine_send: {fixed_us: 0, per_message_us: 0}
          dispatch_recv: {fixed_us: 0, copy_gbps: infinite}
          combine_recv: {fixed_us: 0, copy_gbps: infinite}
        """
    }

    @Test("a long overlap window hides communication: no RECV waits, but for the last layer's RECV-C(B)")
    func hidden() throws {
        let yaml = Self.windowYAML(attn1B: 20).replacingOccurrences(of: "top_k: 1}", with: "top_k: 1, moe_layers: 3}")
        let result = try Simulation.run(try Scenario.parse(yaml: yaml, file: "w.yaml"))
        let receives = result.kernels.filter { $0.kind == .recvDispatch || $0.kind == .recvCombine }
        #expect(receives.count == 2 * 3 * 4)
        let last = receives.filter { $0.layer == 2 && $0.kind == .recvCombine && $0.microBatch == .b }
        #expect(receives.filter { !last.contains($0) }.allSatisfy { $0.wait == .zero })
        // Nothing is left to overlap the step's final combine: it waits its whole flight, 5 + 1 us.
        #expect(last.count == 2 && last.allSatisfy { $0.wait == .us(6) })
    }

    @Test("a short window exposes the combine: RECV-C(A) waits flight minus ATTN1(B)")
    func exposed() throws {
        // Both ranks' A tokens route to expert 0 on rank 0, which returns one 14336 B row to
        // each: flight = 5 + 1 us. ATTN1(B) lasts 2 us, so 4 us of the flight is exposed.
        let result = try Simulation.run(try Scenario.parse(yaml: Self.windowYAML(attn1B: 2), file: "w.yaml"))
        for r in 0..<2 {
            let recvC = result.kernels.first { $0.rank == Int32(r) && $0.kind == .recvCombine && $0.microBatch == .a }!
            #expect(recvC.wait == .us(4), "rank \(r)")
        }
    }
}

@Suite("Two micro-batches: deepseek-prefill (normal mode, comm stream)")
struct PrefillScheduleTests {
    static let yaml = """
        cluster: {ranks: 1}
        model: {experts: 4, top_k: 2, moe_layers: 1}
        workload: {tokens_per_rank: 64}
        schedule: deepseek-prefill
        network:
          model: ideal
          nvlink: {bandwidth_gbps: 1, latency_us: 2}
        costs:
          attn0_us: 108
          attn1_us: 20
          shared_us: 10
          gemm_us: 40
          dispatch_send: {fixed_us: 500, per_message_us: 0}
        """

    @Test("a compute kernel running beside a comm kernel is slowed by exactly 132/108")
    func slowdown() throws {
        let result = try Simulation.run(try Scenario.parse(yaml: Self.yaml, file: "prefill.yaml"))
        let dispatchB = result.kernels.first { $0.kind == .dispatch && $0.microBatch == .b }!
        let attn0A = result.kernels.first { $0.kind == .attn0 && $0.microBatch == .a }!
        #expect(dispatchB.stream == .comm && attn0A.stream == .compute)
        #expect(dispatchB.start <= attn0A.start && attn0A.end <= dispatchB.end, "fully overlapped")
        // ATTN0(A) is half of 108 us at full SMs: 54 us becomes 54 * 132 / 108 = 66 us.
        #expect(attn0A.duration == .us(66))
        let attn0B = result.kernels.first { $0.kind == .attn0 && $0.microBatch == .b }!
        #expect(attn0B.duration == .us(54), "alone, at full speed")
    }

    @Test("compute work is conserved under SM sharing on random prefill runs", arguments: Array(1...12) as [UInt64])
    func workConserved(seed: UInt64) throws {
        var text = RandomScenarios.make(seed)
        text.schedule = "deepseek-prefill"
        let scenario = try text.scenario()
        let result = try Simulation.run(scenario)
        #expect(try Simulation.run(scenario).kernels == result.kernels, "deterministic")
        let s = Int64(scenario.cluster.smsPerGPU)
        let c = Int64(scenario.schedule.commSMs)
        for r in 0..<text.ranks {
            let mine = result.kernels.filter { $0.rank == Int32(r) }
            let comm = mine.filter { $0.stream == .comm }
            let compute = mine.filter { $0.stream == .compute }
            for stream in [comm, compute] {
                for (a, b) in zip(stream, stream.dropFirst()) { #expect(b.start >= a.end, "rank \(r): \(b.kind) overlaps \(a.kind)") }
            }
            for k in comm {
                #expect(k.lastArrival.map { k.end >= $0 } ?? false, "a RECV never ends before its last arrival")
            }
            for k in compute where k.kind.isCompute {
                var overlapped: Int64 = 0
                for m in comm { overlapped += max(0, min(k.end.picos, m.end.picos) - max(k.start.picos, m.start.picos)) }
                let work = overlapped * (s - c) + (k.duration.picos - overlapped) * s
                let nominal = nominalDuration(k, scenario: scenario, result: result).picos * s
                #expect(work >= nominal && work < nominal + s, "rank \(r) \(k.kind)(\(k.microBatch)): work \(work) vs \(nominal)")
            }
        }
    }

    func nominalDuration(_ k: KernelRecord, scenario: Scenario, result: RunResult) -> SimTime {
        let r = Int(k.rank)
        let w = scenario.workload
        let cost = CostModel(costs: scenario.costs, model: scenario.model)
        var work = ComputeWork()
        if k.kind == .mlp {
            let a = result.kernels.first { $0.rank == k.rank && $0.step == k.step && $0.layer == k.layer && $0.kind == .mlp && $0.microBatch == .a }!
            let b = result.kernels.first { $0.rank == k.rank && $0.step == k.step && $0.layer == k.layer && $0.kind == .mlp && $0.microBatch == .b }!
            work.receivedA = Int(a.tokens)
            work.receivedTotal = Int(a.tokens + b.tokens)
        } else {
            work.tokensA = w.tokenRange(rank: r, microBatch: .a, of: 2).count
            work.tokensTotal = w.tokensPerRank[r]
        }
        return cost.computeDuration(k.kind, rank: RankID(r), microBatch: k.microBatch, microBatches: 2, work: work)
    }

    @Test("normal-mode dispatch opens with a count exchange: no rank sends before every rank has started")
    func countExchangeSynchronises() throws {
        let yaml = """
            cluster: {ranks: 2}
            model: {experts: 4, top_k: 2}
            workload: {tokens_per_rank: 64}
            schedule: deepseek-prefill
            network:
              model: ideal
              nvlink: {bandwidth_gbps: 100, latency_us: 3}
            costs:
              attn1_us: [20, 220]
              dispatch_send: {fixed_us: 10, per_message_us: 0}
            """
        let result = try Simulation.run(try Scenario.parse(yaml: yaml, file: "sync.yaml"), options: .init(recordFlows: true))
        let d0 = result.kernels.first { $0.rank == 0 && $0.kind == .dispatch && $0.microBatch == .b }!
        let d1 = result.kernels.first { $0.rank == 1 && $0.kind == .dispatch && $0.microBatch == .b }!
        // Rank 0's data cannot leave before rank 1's counts arrive (start + 3 us), then a 10 us SEND.
        let dataFlows = result.flows.filter { $0.flow.source == 0 && $0.flow.bytes > 0 }
        let firstData = dataFlows.map(\.posted).min()!
        #expect(firstData == d1.start + .us(3) + .us(10))
        #expect(d0.wait >= d1.start - d0.start)
        #expect(d0.blocker == 1)
    }

    @Test("normal mode sends a token once per destination rank")
    func deduplicated() throws {
        let yaml = """
            cluster: {ranks: 2}
            model: {experts: 4, top_k: 2}
            workload: {tokens_per_rank: [10, 10]}
            schedule: deepseek-prefill
            """
        let ll = try Simulation.run(try Scenario.parse(yaml: yaml.replacingOccurrences(of: "deepseek-prefill", with: "none"), file: "x"))
        let normal = try Simulation.run(try Scenario.parse(yaml: yaml, file: "x"))
        // Balanced routing, k=2, E=4: token g picks experts 2g, 2g+1 mod 4, both on one rank.
        #expect(ll.messageCount == 2 * 20 * 2)
        #expect(normal.messageCount == 2 * 20)
    }
}

@Suite("Schedules as data: validation")
struct ScheduleValidationTests {
    static func scenario(_ schedule: String, layers: Int = 2) throws -> Scenario {
        try Scenario.parse(yaml: "cluster: {ranks: 2}\nmodel: {experts: 4, top_k: 2, moe_layers: \(layers)}\nschedule:\n\(schedule)", file: "s.yaml")
    }

    static let invalid: [(String, String)] = [
        ("  body: [ATTN0, ATTN1, SHARED, DISPATCH, MLP]\n", "SEND-C(A, layer 0) is missing: every kernel of every micro-batch must appear once per layer"),
        ("  body: [ATTN0, ATTN1, SHARED, DISPATCH, MLP, COMBINE, MLP]\n", "MLP(A, layer 0) appears twice in the step"),
        ("  body: [ATTN0, ATTN1, SHARED, RECV-D, SEND-D, MLP, COMBINE]\n", "RECV-D(A, layer 0) comes before SEND-D(A, layer 0), which it depends on"),
        ("  body: [ATTN0, ATTN1, SHARED, MLP, DISPATCH, COMBINE]\n", "MLP(A, layer 0) comes before DISPATCH(A, layer 0), which it depends on"),
        (
            """
              micro_batches: 2
              body: [ATTN0(A), ATTN1(A), SEND-D(A), ATTN0(B), ATTN1(B), SEND-D(B), RECV-D(A), MLP(A), SEND-C(A), RECV-C(A), RECV-D(B), MLP(B), SEND-C(B), RECV-C(B), SHARED(A), SHARED(B)]

            """, "SEND-D(B, layer 0) is issued where SEND-C(A, layer 0) must come: low-latency operations must run D(A), C(A), D(B), C(B)"
        ),
        ("  body: [ATTN0, ATTN1, SHARED, SEND-D, SEND-C, RECV-D, MLP, RECV-C]\n", "comes before MLP"),
        (
            """
              micro_batches: 2
              body: [ATTN0(A), ATTN1(A), SEND-D(A), SHARED(A), ATTN0(B), ATTN1(B), SHARED(B), SEND-D(B), RECV-D(A), MLP(A), SEND-C(A), RECV-C(A), RECV-D(B), MLP(B), SEND-C(B), RECV-C(B)]

            """, "SEND-D(B, layer 0) is issued where SEND-C(A, layer 0) must come"
        ),
        (
            """
              micro_batches: 2
              body: [ATTN0(A), ATTN1(A), ATTN0(B), ATTN1(B), SEND-D(A), SHARED(A), SHARED(B), RECV-D(A), MLP(A), SEND-C(A), SEND-D(B), RECV-C(A), RECV-D(B), MLP(B), SEND-C(B), RECV-C(B)]

            """, "SEND-D(B, layer 0) is issued before RECV-C(A, layer 0) has finished: it would overwrite a receive buffer that may still be unread"
        ),
        ("  body: [ATTN0(B), ATTN1, SHARED, DISPATCH, MLP, COMBINE]\n", "ATTN0(B) names micro-batch B, but the schedule has one micro-batch"),
        ("  mode: normal\n  body: [ATTN0, ATTN1, SHARED, SEND-D, RECV-D, MLP, COMBINE]\n", "SEND-D(A): normal-mode kernels have no receive hook"),
        ("  body: [ATTN0, ATTN1, SHARED, DISPATCH@comm, MLP, COMBINE]\n", "a fused low-latency kernel holds every SM, so it runs on the compute stream"),
        ("  mode: normal\n  body: [ATTN0, ATTN1, SHARED, MLP@comm, DISPATCH@comm, COMBINE@comm]\n", "MLP(A, layer 0) comes before DISPATCH(A, layer 0)"),
        ("  body: [ATTN0, ATTN2, SHARED]\n", "unknown kernel \"ATTN2\""),
        ("  body: [ATTN0(C)]\n", "unknown micro-batch \"C\""),
        ("  body: [ATTN0(A,+1)]\n", "inside a YAML [flow, list] a comma splits items"),
    ]

    @Test("invalid schedules are rejected naming the offending kernel", arguments: invalid)
    func rejected(_ schedule: String, _ fragment: String) {
        do {
            _ = try Self.scenario(schedule)
            Issue.record("accepted: \(schedule)")
        } catch let error as ScenarioError {
            #expect(error.code == .invalidSchedule, "\(error)")
            #expect(error.description.contains(fragment), "\(error)")
            #expect(error.keyPath.hasPrefix("schedule"), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test("the presets pass their own validation and a user schedule equal to a preset runs identically")
    func presetsAndUserSchedules() throws {
        for name in ScheduleSpec.presetNames {
            for layers in [1, 2, 5] { _ = try Program(spec: ScheduleSpec.preset(name)!, denseLayers: 1, moeLayers: layers) }
        }
        let user = try Self.scenario(
            """
              micro_batches: 2
              prologue: [ATTN0(A), ATTN1(A), SEND-D(A)]
              body: >-
                SHARED(A) ATTN0(B) RECV-D(A) MLP(A) SEND-C(A) ATTN1(B) RECV-C(A) SEND-D(B) SHARED(B)
                ATTN0(A,+1) RECV-D(B) MLP(B) SEND-C(B) ATTN1(A+1) RECV-C(B) SEND-D(A+1)

            """, layers: 3)
        var preset = user
        try preset.setSchedule(ScheduleSpec.preset("deepseek-decode")!)
        let a = try Simulation.run(user)
        let b = try Simulation.run(preset)
        #expect(a.kernels == b.kernels)
    }

    @Test("the decode preset is exactly the contract's kernel order")
    func decodeOrder() throws {
        let p = try Program(spec: ScheduleSpec.preset("deepseek-decode")!, denseLayers: 0, moeLayers: 2)
        let names = p.instructions.map { "\($0.kind)(\($0.microBatch),\($0.moeLayer))" }
        let body0 =
            "SHARED(A,0) ATTN0(B,0) RECV-D(A,0) MLP(A,0) SEND-C(A,0) ATTN1(B,0) RECV-C(A,0) SEND-D(B,0) SHARED(B,0) ATTN0(A,1) RECV-D(B,0) MLP(B,0) SEND-C(B,0) ATTN1(A,1) RECV-C(B,0) SEND-D(A,1)"
        let body1 =
            "SHARED(A,1) ATTN0(B,1) RECV-D(A,1) MLP(A,1) SEND-C(A,1) ATTN1(B,1) RECV-C(A,1) SEND-D(B,1) SHARED(B,1) RECV-D(B,1) MLP(B,1) SEND-C(B,1) RECV-C(B,1)"
        #expect(names.joined(separator: " ") == "ATTN0(A,0) ATTN1(A,0) SEND-D(A,0) " + body0 + " " + body1)
    }
}

@Suite("Shipped TBO scenarios do what they say")
struct ShippedScheduleScenarioTests {
    static func load(_ name: String) throws -> Scenario {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try Scenario.load(path: root.appendingPathComponent("Scenarios/\(name).yaml").path)
    }

    @Test("decode-combine-hidden: no RECV-C(A) waits; decode-combine-exposed: every RECV-C(A) spins for flight minus ATTN1(B)")
    func combineWindow() throws {
        let hidden = try Simulation.run(try Self.load("decode-combine-hidden"))
        let exposed = try Simulation.run(try Self.load("decode-combine-exposed"))
        let hiddenA = hidden.kernels.filter { $0.kind == .recvCombine && $0.microBatch == .a }
        let exposedA = exposed.kernels.filter { $0.kind == .recvCombine && $0.microBatch == .a }
        #expect(!hiddenA.isEmpty && hiddenA.allSatisfy { $0.wait == .zero })
        // Flight 4 us + 917504 B / 50 GB/s, minus ATTN1(B) = 8 us.
        let flight = SimTime.us(4) + SimTime.transfer(bytes: 64 * 14336, gigabytesPerSecond: 50)
        #expect(exposedA.count == 16 * 4 && exposedA.allSatisfy { $0.wait == flight - .us(8) })
    }
}
