import EventCore
import Foundation
import Testing

@testable import EPSim

func scenario(_ yaml: String) throws -> Scenario { try Scenario.parse(yaml: yaml, file: "t.yaml") }

@Suite("Routing generators")
struct RoutingGeneratorTests {
    /// Selection counts per logical expert over many tokens of one layer.
    func counts(_ s: Scenario, layers: Int = 1) -> [Int] {
        let g = RoutingGenerator(workload: s.workload, model: s.model)
        var c = [Int](repeating: 0, count: s.model.experts)
        for layer in 0..<layers {
            for r in 0..<s.cluster.ranks { g.forEachLogicalSelection(rank: r, step: 0, layer: layer) { _, e in c[e] += 1 } }
        }
        return c
    }

    func chiSquare(_ observed: [Int], weights: [Double]) -> Double {
        let n = Double(observed.reduce(0, +))
        let total = weights.reduce(0, +)
        return zip(observed, weights).map { o, w in
            let e = n * w / total
            return pow(Double(o) - e, 2) / e
        }.reduce(0, +)
    }

    @Test("zipf: per-expert counts follow the Zipf weights (chi-square, 15 dof, 0.1% tail 37.7)")
    func zipf() throws {
        let s = try scenario(
            "cluster: {ranks: 4}\nmodel: {experts: 16, top_k: 1}\nworkload: {tokens_per_rank: 5000, routing: {kind: zipf, exponent: 1.2, permute: false}, seed: 3}\n"
        )
        let c = counts(s)
        let weights = (1...16).map { pow(Double($0), -1.2) }
        #expect(chiSquare(c, weights: weights) < 37.7)
        #expect(c[0] > c[15] * 10, "expert 0 is the hottest when not permuted")
    }

    @Test("hot: named experts are factor times as popular")
    func hot() throws {
        let s = try scenario(
            "cluster: {ranks: 4}\nmodel: {experts: 16, top_k: 1}\nworkload: {tokens_per_rank: 5000, routing: {kind: hot, experts: [3, 9], factor: 6}, seed: 5}\n"
        )
        var weights = [Double](repeating: 1, count: 16)
        weights[3] = 6
        weights[9] = 6
        #expect(chiSquare(counts(s), weights: weights) < 37.7)
    }

    @Test("group limit: every token's experts lie in at most top_groups groups, and are distinct")
    func groupLimited() throws {
        let s = try scenario(
            "cluster: {ranks: 4}\nmodel: {experts: 64, top_k: 8}\nworkload: {tokens_per_rank: 300, routing: {kind: zipf, exponent: 0.8}, group_limit: {groups: 8, top_groups: 3}}\n"
        )
        let g = RoutingGenerator(workload: s.workload, model: s.model)
        for r in 0..<4 {
            var byToken: [Int: [Int]] = [:]
            g.forEachLogicalSelection(rank: r, step: 0, layer: 2) { t, e in byToken[t, default: []].append(e) }
            #expect(byToken.count == 300)
            for (_, experts) in byToken {
                #expect(experts.count == 8 && Set(experts).count == 8)
                #expect(Set(experts.map { $0 / 8 }).count <= 3)
            }
        }
    }

    @Test("the deepseek-v3 preset limits sampled routing to 4 of 8 groups by default")
    func presetGroupLimit() throws {
        let s = try scenario("cluster: {ranks: 8}\nmodel: deepseek-v3\nworkload: {routing: uniform}\n")
        #expect(s.workload.groupLimit == GroupLimit(groups: 8, topGroups: 4))
        #expect(s.model.moeLayers == 58 && s.model.denseLayers == 3 && s.model.hidden == 7168)
    }

    @Test("same seed, same routing; another step or layer, another routing", arguments: ["uniform", "zipf", "hot"])
    func seeded(kind: String) throws {
        let extra = kind == "hot" ? ", experts: [1]" : ""
        let s = try scenario("cluster: {ranks: 4}\nmodel: {experts: 32, top_k: 4}\nworkload: {routing: {kind: \(kind)\(extra)}, seed: 11}\n")
        let g = RoutingGenerator(workload: s.workload, model: s.model)
        let a = g.route(step: 1, layer: 3, microBatches: 2)
        let b = RoutingGenerator(workload: s.workload, model: s.model).route(step: 1, layer: 3, microBatches: 2)
        #expect(a.microBatches[0].pairCounts == b.microBatches[0].pairCounts)
        #expect(a.microBatches[1].expertLoad == b.microBatches[1].expertLoad)
        #expect(
            g.route(step: 2, layer: 3, microBatches: 1).microBatches[0].expertLoad != g.route(step: 1, layer: 3, microBatches: 1).microBatches[0].expertLoad)
    }

    @Test("trace: a written trace reads back into the same routing")
    func traceRoundTrip() throws {
        let s = try scenario("cluster: {ranks: 4}\nmodel: {experts: 16, top_k: 3}\nworkload: {tokens_per_rank: [5, 0, 7, 2], routing: uniform, seed: 2}\n")
        let g = RoutingGenerator(workload: s.workload, model: s.model)
        let text = RoutingTrace.write(g, step: 0, layer: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try text.write(to: dir.appendingPathComponent("routing.csv"), atomically: true, encoding: .utf8)
        let yaml = "cluster: {ranks: 4}\nmodel: {experts: 16, top_k: 3}\nworkload: {routing: {kind: trace, file: routing.csv}}\n"
        try yaml.write(to: dir.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
        let traced = try Scenario.load(path: dir.appendingPathComponent("s.yaml").path)
        #expect(traced.workload.tokensPerRank == [5, 0, 7, 2])
        let fromTrace = RoutingGenerator(workload: traced.workload, model: traced.model).route(step: 4, layer: 9, microBatches: 2)
        let original = g.route(step: 0, layer: 1, microBatches: 2)
        for m in 0..<2 {
            #expect(fromTrace.microBatches[m].pairCounts == original.microBatches[m].pairCounts)
            #expect(fromTrace.microBatches[m].expertLoad == original.microBatches[m].expertLoad)
        }
        #expect(RoutingTrace.write(RoutingGenerator(workload: traced.workload, model: traced.model), step: 0, layer: 0) == text)
    }

    @Test("a malformed trace is refused naming file and line")
    func badTrace() throws {
        #expect(throws: ScenarioError.self) { try RoutingTrace.parse(",0,0,1,1\n", file: "x.csv", ranks: 1, experts: 4, topK: 2, moeLayers: 1) }
        do {
            _ = try RoutingTrace.parse("layer,rank,token,e0\n,0,0,1\n,0,2,3\n", file: "x.csv", ranks: 1, experts: 4, topK: 1, moeLayers: 1)
            Issue.record("accepted")
        } catch let e as ScenarioError {
            #expect(e.line == 3 && e.description.contains("expected token 1"))
        }
    }

    @Test("a trace must cover every MoE layer and only those; CRLF lines read as LF")
    func traceLayers() throws {
        // Lines for layer 0 only, for a model of two MoE layers: refused when read (it used to
        // pass validate and trap in run).
        let onlyFirst = "layer,rank,token,e0,e1\n0,0,0,1,2\n0,1,0,3,4\n"
        #expect {
            _ = try RoutingTrace.parse(onlyFirst, file: "t.csv", ranks: 2, experts: 16, topK: 2, moeLayers: 2)
        } throws: { "\($0)".contains("MoE layer 1 has no line") }
        // Layers numbered as the model counts all layers (dense included): layer 3 of 2.
        #expect {
            _ = try RoutingTrace.parse("3,0,0,1,2\n", file: "t.csv", ranks: 1, experts: 16, topK: 2, moeLayers: 2)
        } throws: { "\($0)".contains("layer 3 does not exist") && "\($0)".contains("dense layers are not counted") }
        let lf = try RoutingTrace.parse("layer,rank,token,e0,e1\n0,0,0,1,2\n1,0,0,3,4\n", file: "t.csv", ranks: 1, experts: 16, topK: 2, moeLayers: 2)
        let crlf = try RoutingTrace.parse("layer,rank,token,e0,e1\r\n0,0,0,1,2\r\n1,0,0,3,4\r\n", file: "t.csv", ranks: 1, experts: 16, topK: 2, moeLayers: 2)
        #expect(lf == crlf)
        // End to end: the scenario of the issue is refused by validate's reader, not trapped on.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try onlyFirst.write(to: dir.appendingPathComponent("t.csv"), atomically: true, encoding: .utf8)
        let yaml = "cluster: {ranks: 2}\nmodel: {experts: 16, top_k: 2, moe_layers: 2}\nworkload: {routing: {kind: trace, file: t.csv}}\n"
        try yaml.write(to: dir.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
        #expect(throws: ScenarioError.self) { try Scenario.load(path: dir.appendingPathComponent("s.yaml").path) }
    }
}

@Suite("Expert placement")
struct PlacementTests {
    @Test("greedy never raises the maximum expected rank load above contiguous", arguments: Array(1...25) as [UInt64])
    func greedyNoWorse(seed: UInt64) {
        var g = SplitMix64(seed: seed)
        let ranks = [2, 4, 8][g.next(below: 3)]
        let experts = ranks * (1 + g.next(below: 6))
        let extra = ranks * g.next(below: 3)
        let load = (0..<experts).map { _ in Double(1 + g.next(below: 1000)) * (g.next(below: 5) == 0 ? 20 : 1) }
        let contiguous = ExpertPlacement.contiguous(experts: experts, ranks: ranks, physical: experts + extra).expectedRankLoad(load, ranks: ranks).max()!
        let greedy = ExpertPlacement.greedy(load: load, physical: experts + extra, ranks: ranks)
        #expect(greedy.expectedRankLoad(load, ranks: ranks).max()! <= contiguous + 1e-9)
        #expect(greedy.slotExpert.count == experts + extra)
        #expect(Set(greedy.slotExpert.map(Int.init)) == Set(0..<experts), "every expert placed")
        for r in 0..<ranks { #expect(greedy.slotRank.filter { $0 == Int32(r) }.count == (experts + extra) / ranks) }
    }

    @Test("on a hot-expert workload greedy placement with redundant slots lowers the maximum load and the step")
    func hotWorkload() throws {
        let base = """
            cluster: {ranks: 8, gpus_per_node: 8}
            workload: {tokens_per_rank: 256, routing: {kind: hot, experts: [0, 1, 2, 3], factor: 12}, seed: 4, replica: least-loaded}
            costs: {gemm_us: 0}
            """
        let plain = try scenario(base + "\nmodel: {experts: 64, top_k: 8}\n")
        let balanced = try scenario(base + "\nmodel: {experts: 64, top_k: 8, physical_experts: 80}\n")
        let load = plain.workload.expectedPopularity(experts: 64)
        let contiguousMax = plain.model.expertPlacement.expectedRankLoad(load, ranks: 8).max()!
        let greedyMax = balanced.model.expertPlacement.expectedRankLoad(load, ranks: 8).max()!
        #expect(greedyMax < contiguousMax * 0.7)
        #expect(balanced.model.expertPlacement.replicas[0].count > 1, "hot experts are replicated")
        let a = try Simulation.run(plain)
        let b = try Simulation.run(balanced)
        let maxReceived = { (r: RunResult) in r.kernels.filter { $0.kind == .mlp }.map(\.tokens).max()! }
        #expect(maxReceived(b) < maxReceived(a))
        #expect(b.stepLatency < a.stepLatency)
    }

    @Test("round-robin spreads a source's selections of an expert over its replicas evenly")
    func roundRobin() throws {
        let s = try scenario(
            "cluster: {ranks: 2}\nmodel: {experts: 2, top_k: 1, physical_experts: 4, slots: [0, 1, 0, 1]}\nworkload: {tokens_per_rank: [10, 10]}\n")
        let r = RoutingGenerator(workload: s.workload, model: s.model).route(step: 0, layer: 0, microBatches: 1)
        #expect(r.microBatches[0].expertLoad == [5, 5, 5, 5])
    }
}

@Suite("Compute cost models")
struct CostModelTests {
    static let hw = Hardware.h800

    /// The generic roofline's closed forms: the preset's measured production kernels switched off.
    func model(_ preset: String) throws -> Scenario {
        try scenario("hardware: {preset: h800, projection_stream_gbps: 0, expert_gemm_stream_gbps: 0}\ncluster: {ranks: 8}\nmodel: \(preset)\n")
    }

    @Test("memory-bound: DeepSeek-V3 ATTN0 for 8 decode tokens is its weights over HBM bandwidth")
    func memoryBound() throws {
        let s = try model("deepseek-v3")
        var w = ComputeWork()
        w.tokens = 8
        w.kvLength = 4096
        // Weights: q_a 7168x1536, q_b 1536x128x192, kv_a 7168x576, absorbed k 512x128x128 (FP8, 1 B each).
        let qa: Double = 7168 * 1536
        let qb: Double = 1536 * 128 * 192
        let kva: Double = 7168 * 576
        let absorbed: Double = 512 * 128 * 128
        let params: Double = qa + qb + kva + absorbed
        let bytes: Double = params + 8 * 7168 * 2
        let expected: Double = 3 + bytes / (3350e9 * 0.8) * 1e6
        let d = CostModel(costs: s.costs, model: s.model).computeDuration(.attn0, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        #expect(d == SimTime(micros: expected))
        let computeSeconds: Double = 2 * 8 * params / (1979e12 * 0.6)
        #expect(computeSeconds < bytes / (3350e9 * 0.8), "memory-bound indeed")
    }

    @Test("compute-bound: a grouped GEMM with 512 tokens on each of 2 experts is its FLOPs over peak")
    func computeBound() throws {
        // The generic roofline (the preset's measured expert GEMM switched off).
        let s = try scenario("hardware: {preset: h800, expert_gemm_stream_gbps: 0}\ncluster: {ranks: 8}\nmodel: deepseek-v3\n")
        var w = ComputeWork()
        w.expertTokens = [512, 500, 0]
        // 500 pads to 512; an idle expert costs nothing.
        let flops: Double = 2.0 * 1024 * 3 * 7168 * 2048
        let expected: Double = 3 + flops / (1979e12 * 0.6) * 1e6
        let d = CostModel(costs: s.costs, model: s.model).computeDuration(.mlp, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        #expect(d == SimTime(micros: expected))
        let bytes: Double = 2 * 3.0 * 7168 * 2048 + 1012 * 7168 * 3
        let computeSeconds: Double = flops / (1979e12 * 0.6)
        #expect(computeSeconds > bytes / (3350e9 * 0.8), "compute-bound indeed")
    }

    @Test("the expert_ffn_* keys price MLP as fixed + max(FLOPs / rate, bytes / stream rate)")
    func measuredExpertFFN() throws {
        let s = try scenario(
            "hardware: {preset: h800, expert_ffn_fixed_us: 63.7, expert_ffn_stream_gbps: 1768, expert_ffn_tflops: 763}\ncluster: {ranks: 8}\nmodel: deepseek-v3\n")
        var w = ComputeWork()
        w.expertTokens = [512, 500, 0, 3]
        let h = s.costs.hardware
        // 500 and 3 pad to 512 and 64; bytes count the real rows.
        let flops: Double = 2.0 * (1024 + 64) * 3 * 7168 * 2048
        let bytes: Double = 3 * 3.0 * 7168 * 2048 + 1015 * 7168 * 3
        let expected = h.expertFFNFixedMicros + max(flops / (h.expertFFNTFLOPS * 1e6), bytes / (h.expertFFNStreamGBps * 1e3))
        let d = CostModel(costs: s.costs, model: s.model).computeDuration(.mlp, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        #expect(d == SimTime(micros: expected))
    }

    @Test("a measured table is interpolated linearly and extrapolated along its end segments")
    func table() {
        let p = [MeasuredPoint(tokens: 0, micros: 10), MeasuredPoint(tokens: 64, micros: 20), MeasuredPoint(tokens: 128, micros: 40)]
        #expect(CostModel.interpolate(p, at: 32) == 15)
        #expect(CostModel.interpolate(p, at: 96) == 30)
        #expect(CostModel.interpolate(p, at: 256) == 80)
        #expect(CostModel.interpolate([MeasuredPoint(tokens: 5, micros: 7)], at: 100) == 7)
    }

    @Test("a table file in the scenario sets the kinds it lists")
    func tableFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("table-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "kind,tokens,us\nATTN1,0,10\nATTN1,128,74\n".write(to: dir.appendingPathComponent("t.csv"), atomically: true, encoding: .utf8)
        try "cluster: {ranks: 2}\nworkload: {tokens_per_rank: 64}\ncosts: {table: t.csv}\n".write(
            to: dir.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
        let s = try Scenario.load(path: dir.appendingPathComponent("s.yaml").path)
        let result = try Simulation.run(s)
        let attn1 = result.kernels.first { $0.kind == .attn1 }!
        #expect(attn1.duration == .us(42))
        #expect(result.kernels.first { $0.kind == .attn0 }!.duration == .us(30), "kinds the table does not list keep their default")
        try "kind,tokens,us\nATTN9,0,1\n".write(to: dir.appendingPathComponent("t.csv"), atomically: true, encoding: .utf8)
        #expect(throws: ScenarioError.self) { try Scenario.load(path: dir.appendingPathComponent("s.yaml").path) }
    }

    @Test("the Qwen3 preset: GQA attention, no shared expert")
    func qwen() throws {
        let s = try model("qwen3-235b-a22b")
        #expect(s.model.moeLayers == 94 && s.model.experts == 128 && s.model.hidden == 4096)
        var w = ComputeWork()
        w.tokens = 64
        #expect(CostModel(costs: s.costs, model: s.model).computeDuration(.shared, rank: RankID(0), microBatch: .a, microBatches: 1, work: w) == .zero)
    }
}

@Suite("Per-rank distributions and multi-step runs")
struct DistributionTests {
    @Test(
        "draws stay in range and are deterministic",
        arguments: [
            Distribution.uniform(min: 10, max: 20), .normal(mean: 128, stddev: 40), .lognormal(mu: 4, sigma: 1), .zipf(exponent: 1.1, max: 300), .constant(7),
        ])
    func draws(_ d: Distribution) {
        let values = (0..<2000).map { d.draw(rank: $0, step: 1, seed: 9, purpose: 1, range: 0...256) }
        #expect(values.allSatisfy { (0...256).contains($0) })
        #expect(values == (0..<2000).map { d.draw(rank: $0, step: 1, seed: 9, purpose: 1, range: 0...256) })
        if case .uniform = d { #expect(Set(values) == Set(10...20)) }
        if case .normal = d {
            let mean = Double(values.reduce(0, +)) / 2000
            #expect(abs(mean - 128) < 4)
        }
    }

    @Test("steps re-draw routing and tokens; the run reports percentiles of step latency")
    func multiStep() throws {
        let s = try scenario(
            """
            cluster: {ranks: 4, gpus_per_node: 2}
            model: {experts: 16, top_k: 4}
            workload: {tokens_per_rank: {distribution: uniform, min: 16, max: 96}, redraw_tokens: true, routing: uniform, seed: 3}
            steps: 20
            """)
        let result = try Simulation.run(s)
        let tokens = Set(result.rankSteps.map(\.tokens))
        #expect(tokens.count > 10, "token counts change from step to step")
        let latencies = result.stepLatencies.map(\.micros)
        #expect(Set(latencies).count > 10)
        let summary = RunSummary(result: result)
        let sorted = latencies.sorted()
        #expect(summary.step_latency_p50_us == sorted[9])
        #expect(summary.step_latency_p90_us == sorted[17])
        #expect(summary.step_latency_p99_us == sorted[19])
        #expect(summary.step_latency_us == sorted[19])
    }
}

@Suite("Calibration against DeepEP's published table")
struct CalibrationTests {
    /// The kernel-level costs are the H200 measurement's and only the four link parameters are
    /// fitted to these twelve numbers: the worst error is 9.5%, as `docs/validation.md`
    /// states it; the target stays 10%. DeepEP's first, all-RDMA table is never fitted to and
    /// must hold the same target.
    @Test("every EP size within 10% for dispatch and combine, in both published tables")
    func withinTenPercent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let current = try DeepEPCalibration.run(directory: root.appendingPathComponent("Scenarios/calibration").path)
        let allRDMA = try DeepEPCalibration.run(directory: root.appendingPathComponent("Scenarios/calibration").path, allRDMA: true)
        #expect(current.count == 6 && allRDMA.count == 6)
        for r in current + allRDMA {
            #expect(abs(r.dispatchError) < 0.10, "EP \(r.ep) dispatch \(r.dispatchMicros) vs \(r.published.dispatchMicros)")
            #expect(abs(r.combineError) < 0.10, "EP \(r.ep) combine \(r.combineMicros) vs \(r.published.combineMicros)")
        }
    }
}

@Suite("Expert placement without redundant experts")
struct PlacementWithoutReplicasTests {
    static func mlpTokens(_ placement: String) throws -> [Int64] {
        let yaml = """
            cluster: {ranks: 2}
            model: {experts: 4, top_k: 1, \(placement)}
            workload: {tokens_per_rank: 64, routing: {kind: hot, experts: [0, 1], factor: 8}}
            """
        let result = try Simulation.run(try Scenario.parse(yaml: yaml, file: "p.yaml"))
        return (0..<2).map { r in result.kernels.first { $0.rank == Int32(r) && $0.kind == .mlp }!.tokens }
    }

    @Test("greedy and model.slots move experts even when there is no replica (an EPLB rearrangement)")
    func rearrangement() throws {
        let contiguous = try Self.mlpTokens("placement: contiguous")
        let greedy = try Self.mlpTokens("placement: greedy")
        let explicit = try Self.mlpTokens("placement: [0, 1, 0, 1]")
        let slots = try Self.mlpTokens("slots: [0, 2, 1, 3]")
        #expect(contiguous.reduce(0, +) == 128 && greedy.reduce(0, +) == 128)
        #expect(contiguous[0] > 2 * contiguous[1], "both hot experts on rank 0")
        // Greedy puts one hot expert on each rank: the same split as the explicit list.
        #expect(greedy == explicit)
        #expect(slots == explicit, "slots 0,1 (rank 0) hold experts 0 and 2; slots 2,3 (rank 1) hold 1 and 3")
        #expect(abs(greedy[0] - greedy[1]) < contiguous[0] - contiguous[1])
    }
}
