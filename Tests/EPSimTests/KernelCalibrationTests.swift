import EventCore
import Foundation
import Testing

@testable import EPSim

/// The production-kernel measurements (`calibration/kernels/`), their fit, the presets built
/// from them and the what-if rule.
@Suite("Production compute kernels")
struct KernelCalibrationTests {
    static let measurements = MeasuredCalibrationTests.measurements

    static func shippedRows() throws -> [KernelCalibration.Row] {
        try ValidationPage.kernelSittings.fit.flatMap { try KernelCalibration.read(path: measurements + "/" + $0) }
    }

    static let header =
        "family,name,dtype,kernel,routing,experts,tokens_per_expert,max_tokens_per_expert,tokens_by_expert,tokens,n,k,batch,s_q,kv_length,kv_max,kv_by_request,flops,bytes,us_p50,us_p10,us_p90,other_us_p50,span_us_p50,reps,kernels"

    @Test("the sittings are read whole, kernel names with commas included")
    func readsSittings() throws {
        let rows = try Self.shippedRows()
        #expect(rows.filter { $0.family == .expertGEMM }.count == 304)
        #expect(rows.filter { $0.family == .attention }.count == 104)
        #expect(rows.filter { $0.family == .projection }.count == 65 && rows.filter { $0.family == .absorbed }.count == 26)
        #expect(rows.filter { $0.family == .activation }.count == 78)
        // Every expert GEMM row's rows add up to its tokens (conserved through the CSV).
        for r in rows where r.family == .expertGEMM { #expect(r.tokensByExpert.reduce(0, +) == r.tokens) }
        let mixed = rows.filter { $0.family == .attention && $0.routing == "mixed" }
        #expect(mixed.count == 6 && mixed.allSatisfy { $0.kvByRequest.count == $0.batch })
    }

    @Test("malformed rows are refused with the file and line")
    func malformed() throws {
        let good =
            "expert-gemm,down,fp8,\"void f<1, 2>\",equal,2,4,4,4/4,8,7168,2048,,,,,,0,0,10.5,10.1,10.9,0.000,10.5,20,\"a, b\""
        let cases: [(String, String)] = [
            (good.replacingOccurrences(of: "4/4", with: "4/x"), "tokens_by_expert"),
            (good.replacingOccurrences(of: "expert-gemm,", with: "gemm,"), "column family"),
            (good.replacingOccurrences(of: ",10.5,10.1", with: ",-1,10.1"), "us_p50"),
            (good.replacingOccurrences(of: "\"a, b\"", with: "\"a, b"), "quoted cell"),
            (good.replacingOccurrences(of: "4/4,8,7168", with: ",8,7168"), "tokens_by_expert"),
            ("flash-mla,flash-mla-decode,bf16,k,equal,,,,,,,,4,1,,,,0,0,50,49,51,1,52,20,k", "kv_length"),
        ]
        let ok = try MeasuredCalibrationTests.folder(["x.csv": Self.header + "\n" + good + "\n"])
        let parsed = try KernelCalibration.read(path: ok + "/x.csv")
        #expect(parsed.count == 1 && parsed[0].tokensByExpert == [4, 4] && parsed[0].micros == 10.5)
        for (row, fragment) in cases {
            let dir = try MeasuredCalibrationTests.folder(["x.csv": Self.header + "\n" + good + "\n" + row + "\n"])
            do {
                _ = try KernelCalibration.read(path: dir + "/x.csv")
                Issue.record("accepted: \(row)")
            } catch let e as MeasurementError {
                #expect(e.file.hasSuffix("x.csv") && e.line == 3, "\(e)")
                #expect(e.message.contains(fragment), "\(e)")
            }
        }
        #expect(throws: MeasurementError.self) { _ = try KernelCalibration.load(ok + "/missing") }
    }

    @Test("the fit reproduces the shipped model of every family")
    func fitReproducesPreset() throws {
        var start = Hardware.h100
        start.measured = MeasuredCompute()
        let fitted = try KernelCalibration.fit(try Self.shippedRows(), start: start, source: "x").measured
        let shipped = MeasuredCompute.hopperH100
        #expect(fitted.expertGEMM == shipped.expertGEMM && fitted.expertGEMMReread == shipped.expertGEMMReread)
        #expect(fitted.activation == shipped.activation && fitted.activationRowMicros == shipped.activationRowMicros)
        #expect(fitted.projection == shipped.projection && fitted.absorbedBMM == shipped.absorbedBMM)
        #expect(fitted.attentionCore == shipped.attentionCore && fitted.attentionRequestMicros == shipped.attentionRequestMicros)
        #expect(fitted.reference == shipped.reference)
        #expect(Hardware.h100.measured == shipped && Hardware.h800.measured == shipped && Hardware.h200.measured == shipped)
    }

    @Test("held-out errors stay at their measured figures (plus half a point)")
    func heldOut() throws {
        // docs/validation.md, "Production compute kernels on one H100".
        let measured: [KernelCalibration.Family: Double] = [
            .expertGEMM: 0.071, .activation: 0.078, .projection: 0.097, .absorbed: 0.067, .attention: 0.096,
        ]
        let summary = KernelCalibration.summary(try Self.shippedRows(), on: .h100)
        #expect(summary.count == 5)
        for s in summary {
            #expect(s.heldOut.count > 0 && s.fit.count > 0)
            #expect(s.heldOut.meanAbs <= measured[s.family]! + 0.005, "\(s.family): \(s.heldOut.meanAbs)")
        }
    }

    @Test("what-if: halving HBM bandwidth doubles every measured kernel's memory term and keeps its fixed part")
    func whatIfScaling() throws {
        var slow = Hardware.h100
        slow.hbmGBps /= 2
        let m = Hardware.h100.measured
        let sc = m.scales(for: slow)
        #expect(sc.memory == 0.5 && sc.fp8 == 1 && sc.bf16 == 1)
        for fit in [m.expertGEMM, m.projection, m.absorbedBMM, m.attentionCore] {
            let base = fit.terms(flops: 3e9, bytes: 7e8)
            let halved = fit.terms(flops: 3e9, bytes: 7e8, memoryScale: 0.5)
            #expect(abs(halved.memory - 2 * base.memory) < 1e-9 && halved.math == base.math)
        }
        // A memory-bound call end to end (one row on each of 16 experts: 470 MB of weights, one
        // 64-row tile each): the time grows by exactly its memory term, the rest is unchanged.
        let rows = Array(repeating: 1, count: 16)
        let t = m.expertGEMMMicros(rows: rows, n: 4096, k: 7168, on: .h100)
        let tSlow = m.expertGEMMMicros(rows: rows, n: 4096, k: 7168, on: slow)
        let terms = m.expertGEMM.terms(flops: 2 * 16 * 64 * 4096 * 7168, bytes: 16 * 4096 * 7168)
        #expect(terms.memory > terms.math)
        #expect(abs((tSlow - t) - terms.memory) < 1e-6, "\(tSlow - t) against \(terms.memory)")
        // Halving the FP8 peak doubles the math term of a compute-bound call and leaves HBM alone.
        var weak = Hardware.h100
        weak.peakFP8TFLOPS /= 2
        let sw = m.scales(for: weak)
        #expect(sw.memory == 1 && sw.fp8 == 0.5 && sw.bf16 == 1)
    }

    @Test("run and validate are told what was extrapolated, and nothing on the measured GPU")
    func note() throws {
        #expect(Hardware.h100.measured.extrapolationNote(for: .h100) == nil)
        #expect(Hardware.h800.measured.extrapolationNote(for: .h800) == nil)
        let h200 = try #require(Hardware.h200.measured.extrapolationNote(for: .h200))
        #expect(h200.contains("hbm_gbps 4800 against 3350 measured") && h200.contains("x1.43") && h200.contains("2026-12-07-h100-kernels-{a,c}"))
        let s = try scenario("hardware: {preset: h100, hbm_gbps: 1600, peak_bf16_tflops: 500}\ncluster: {ranks: 2}\nmodel: deepseek-v3\n")
        let note = try #require(s.costs.hardware.measured.extrapolationNote(for: s.costs.hardware))
        #expect(note.contains("hbm_gbps 1600") && note.contains("peak_bf16_tflops 500") && !note.contains("peak_fp8"))
        #expect(s.measuredKernelNote == note)
        // Only where a measured model prices a kernel of the scenario.
        let fixed = try scenario("hardware: {preset: h200}\ncluster: {ranks: 2}\nmodel: deepseek-v3\ncosts: {compute: fixed}\n")
        #expect(fixed.measuredKernelNote == nil)
        let off = try scenario(
            "hardware: {preset: h200, expert_gemm_stream_gbps: 0, projection_stream_gbps: 0}\ncluster: {ranks: 2}\nmodel: deepseek-v3\n")
        #expect(off.measuredKernelNote == nil)
        // FlashMLA's BF16 fit stretched to an FP8 cache on the measured GPU itself.
        let fp8 = try scenario("hardware: h100\ncluster: {ranks: 2}\nmodel: {preset: deepseek-v3, kv_cache_dtype: fp8}\n")
        let fp8Note = try #require(fp8.measuredKernelNote)
        #expect(fp8Note.contains("1-byte KV cache") && !fp8Note.contains("hbm_gbps"))
        #expect(try scenario("hardware: h100\ncluster: {ranks: 2}\nmodel: deepseek-v3\n").measuredKernelNote == nil)
    }

    @Test("MLP is gate-up, activation and down from the measured models; the old keys still select PyTorch's fit")
    func mlpComposition() throws {
        let s = try scenario("hardware: h100\ncluster: {ranks: 16}\nmodel: deepseek-v3\n")
        var w = ComputeWork()
        w.expertTokens = [40, 0, 90, 12]
        let rows = [40, 0, 90, 12]
        let m = Hardware.h100.measured
        let expected =
            m.expertGEMMMicros(rows: rows, n: 4096, k: 7168, on: .h100) + m.activationMicros(rows: rows, intermediate: 2048, on: .h100)
            + m.expertGEMMMicros(rows: rows, n: 7168, k: 2048, on: .h100)
        let cost = CostModel(costs: s.costs, model: s.model)
        #expect(cost.computeDuration(.mlp, rank: RankID(0), microBatch: .a, microBatches: 1, work: w) == SimTime(micros: expected))
        w.expertTokens = [0, 0, 0, 0]
        #expect(cost.computeDuration(.mlp, rank: RankID(0), microBatch: .a, microBatches: 1, work: w) == .zero)
        // A hot expert costs more than the same rows spread evenly (whole row tiles past expected_m).
        let even = m.expertGEMMMicros(rows: [64, 64, 64, 64], n: 4096, k: 7168, on: .h100)
        let hot = m.expertGEMMMicros(rows: [208, 16, 16, 16], n: 4096, k: 7168, on: .h100)
        #expect(hot > even)
        // activation_stream_gbps: 0 prices the activation as the roofline does, not as nothing.
        let noAct = try scenario("hardware: {preset: h100, activation_stream_gbps: 0}\ncluster: {ranks: 16}\nmodel: deepseek-v3\n")
        w.expertTokens = [40, 0, 90, 12]
        let h = Hardware.h100
        let actRoofline = h.kernelOverheadMicros + 142 * Double(2048 * 5 + 16 * 4) / (h.hbmGBps * h.memoryEfficiency * 1e3)
        let withRoofline =
            m.expertGEMMMicros(rows: rows, n: 4096, k: 7168, on: .h100) + actRoofline + m.expertGEMMMicros(rows: rows, n: 7168, k: 2048, on: .h100)
        let d = CostModel(costs: noAct.costs, model: noAct.model).computeDuration(.mlp, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        #expect(abs(d.micros - withRoofline) < 1e-5)
        let old = try scenario("hardware: {preset: h100, expert_ffn_fixed_us: 63.7, expert_ffn_stream_gbps: 2530, expert_ffn_tflops: 763}\ncluster: {ranks: 16}\nmodel: deepseek-v3\n")
        w.expertTokens = [40, 0, 90, 12]
        let oldCost = CostModel(costs: old.costs, model: old.model).computeDuration(.mlp, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        #expect(oldCost.micros > 63.7 && oldCost != SimTime(micros: expected))
    }

    @Test("decode attention: ATTN1 grows with the KV cache read, by FlashMLA's fit, and MTP reads it once per request")
    func attention() throws {
        let s = try scenario("hardware: h100\ncluster: {ranks: 2}\nmodel: deepseek-v3\n")
        let cost = CostModel(costs: s.costs, model: s.model)
        var w = ComputeWork()
        w.tokens = 64
        w.tokensTotal = 64
        w.kvLength = 4096
        let short = cost.computeDuration(.attn1, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        w.kvLength = 8192
        let long = cost.computeDuration(.attn1, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        let m = Hardware.h100.measured
        let core = { (kv: Double) in
            m.attentionCoreMicros(requests: 64, queryTokens: 1, kvTokens: 64 * kv, heads: 128, dQK: 576, dV: 512, kvBytes: 2, on: .h100)
        }
        #expect(abs((long - short).micros - (core(8192) - core(4096))) < 1e-5)
        // Two query tokens per request (MTP): the same cache bytes, twice the FLOPs.
        w.requests = 32
        let mtp = cost.computeDuration(.attn1, rank: RankID(0), microBatch: .a, microBatches: 1, work: w)
        #expect(mtp < long)
    }

    @Test("DeepGEMM's tiling: the port's choices for the measured shapes")
    func tiling() {
        // The choices a separate Python transcription of heuristics/sm90.hpp gives (same author,
        // so a check of the port's arithmetic, not of DeepGEMM: its chosen tiles were not recorded).
        #expect(pair(DeepGEMMTiling.choose(expectedM: 1, n: 4096, k: 7168, groups: 1, masked: true)) == [64, 32])
        #expect(pair(DeepGEMMTiling.choose(expectedM: 128, n: 4096, k: 7168, groups: 4, masked: true)) == [128, 128])
        #expect(pair(DeepGEMMTiling.choose(expectedM: 64, n: 7168, k: 2048, groups: 16, masked: true)) == [64, 192])
        #expect(pair(DeepGEMMTiling.choose(expectedM: 4, n: 2112, k: 7168, groups: 1, masked: false)) == [16, 16])
        for m in [1, 7, 64, 65, 300, 512] {
            let t = DeepGEMMTiling.choose(expectedM: m, n: 4096, k: 7168, groups: 8, masked: true)
            #expect([64, 128].contains(t.blockM) && t.blockN % 16 == 0 && t.blockN <= 192)
        }
    }

    func pair(_ t: (blockM: Int, blockN: Int)) -> [Int] { [t.blockM, t.blockN] }

    @Test("CSV cells in double quotes keep their commas and escaped quotes")
    func quotedCells() {
        #expect(CSVTable.cells("a,\"b, c\",\"d\"\"e\",") == ["a", "b, c", "d\"e", ""])
        #expect(CSVTable.cells("a,\"b") == nil)
        #expect(CSVTable.cells("a,b") == ["a", "b"])
    }
}
