import EventCore
import Foundation

/// Measured compute kernels (`calibration/deepep/measure_compute.py`'s `compute.csv`) against
/// the roofline, and the fit of the routed experts' grouped FFN model.
public enum ComputeCalibration {
    /// One measured kernel: what it is, its shape and its median time.
    public struct Row: Sendable {
        public var line: Int
        /// `expert-ffn`, `gemm` or `mla-decode`.
        public var table: String
        public var name: String
        public var dtype: String
        public var kernel: String
        public var experts: Int
        public var tokensPerExpert: Int
        public var tokens: Int
        public var micros: Double
    }

    /// Reads `compute.csv`; errors name the file and line.
    public static func read(path: String) throws -> [Row] {
        return try CSVTable(path: path).rows.map { r in
            func optInt(_ c: String, _ range: ClosedRange<Int>) throws -> Int { try r.optionalInt(c, in: range) }
            let row = Row(
                line: r.line, table: try r.string("table"), name: try r.string("name"), dtype: try r.string("dtype"), kernel: try r.string("kernel"),
                experts: try optInt("experts", 1...1024), tokensPerExpert: try optInt("tokens_per_expert", 0...65536),
                tokens: try optInt("tokens", 0...ScenarioLimits.maxTokensPerRank), micros: try r.double("us_p50"))
            guard row.micros > 0 else { throw r.fail("column us_p50: a kernel time must be positive, found \(row.micros)") }
            if row.table == "expert-ffn" && row.experts == 0 { throw r.fail("column experts: an expert-ffn row needs its local experts (1...1024)") }
            return row
        }
    }

    /// A measured-times table for `costs.table` (`kind,tokens,us`): `SHARED` from the shared
    /// expert's FFN and `DENSE` from the dense layers' FFN, in `dtype`, at every measured
    /// token count. The attention kernels are left to the roofline: their measured stand-ins
    /// (separate GEMMs, an unfused MLA) are not what a production `ATTN0`/`ATTN1` runs.
    public static func table(_ rows: [Row], dtype: String = "fp8") -> String {
        var out = "kind,tokens,us\n"
        for (kind, name) in [("SHARED", "shared-expert-ffn"), ("DENSE", "dense-ffn")] {
            for r in rows where r.table == "gemm" && r.name == name && r.dtype == dtype {
                out += "\(kind),\(r.tokens),\(String(format: "%.3f", r.micros))\n"
            }
        }
        return out
    }

    /// The routed-expert FFN rows of a dtype (every expert with the same tokens).
    public static func expertRows(_ rows: [Row], dtype: String = "fp8") -> [Row] {
        rows.filter { $0.table == "expert-ffn" && $0.dtype == dtype }
    }

    /// The `MLP` duration the cost model gives `hardware` for `experts` local experts with
    /// `tokensPerExpert` tokens each (DeepSeek-V3 sizes: H 7168, I 2048, FP8 weights).
    public static func predicted(_ hardware: Hardware, experts: Int, tokensPerExpert: Int) -> Double {
        var costs = CostConfig(
            attn0: .roofline, attn1: .roofline, shared: .roofline, gemm: .roofline, denseMLP: .roofline, hardware: hardware,
            dispatchSend: SendCost(fixed: [], perMessage: .zero), dispatchRecv: RecvCost(fixed: [], copyGBps: 1),
            combineSend: SendCost(fixed: [], perMessage: .zero), combineRecv: RecvCost(fixed: [], copyGBps: 1))
        costs.launchGap = .zero
        let a = Architecture.deepseekV3
        let model = MoEModel(
            hidden: a.hidden, experts: a.routedExperts, topK: a.topK, moeLayers: 1, denseLayers: 0, dispatchPrecision: .fp8,
            expertPlacement: ExpertPlacement.contiguous(experts: a.routedExperts, ranks: 1), architecture: a)
        var work = ComputeWork()
        work.expertTokens = Array(repeating: Int32(tokensPerExpert), count: experts)
        return CostModel(costs: costs, model: model).roofline(.mlp, work: work).micros
    }

    /// The grouped-FFN model fitted to PyTorch's FP8 grouped kernels on one H200
    /// (`2026-11-29-h200x2-b/compute/compute.csv`: 63.7 µs fixed, 2530 GB/s, 763 TFLOP/s):
    /// the `h200` preset's `MLP` until the production kernels were measured
    /// (``MeasuredCompute/hopperH100``); kept for the comparison in `docs/validation.md` and
    /// as `hardware: {expert_ffn_fixed_us: 63.7, expert_ffn_stream_gbps: 2530,
    /// expert_ffn_tflops: 763}` for anyone who wants that kernel back.
    public static let pytorchH200: Hardware = {
        var h = Hardware.h200
        h.measured = MeasuredCompute()
        (h.expertFFNFixedMicros, h.expertFFNStreamGBps, h.expertFFNTFLOPS) = (63.7, 2530, 763)
        return h
    }()

    /// The fitted expert-FFN fields, with their ranges.
    public static let fitParameters: [SearchedParameter] = [
        .init("expert_ffn_fixed_us", 0...500), .init("expert_ffn_stream_gbps", 100...10000), .init("expert_ffn_tflops", 10...5000),
    ]

    /// Which rows the shipped fit uses: 1, 4 and 16 local experts (2, 8 and 32 are held out).
    public static func isFitRow(_ r: Row) -> Bool { [1, 4, 16].contains(r.experts) }

    /// ``CoordinateSearch`` of the expert-FFN
    /// fields on the rows `isFitRow` selects, minimising the sum of squared relative errors;
    /// rounded to 3 significant digits. Deterministic.
    public static func fit(_ rows: [Row], start: Hardware, rounds: Int = 10) throws -> Hardware {
        let fitRows = rows.filter(isFitRow)
        guard !fitRows.isEmpty else {
            throw MeasurementError(file: "-", message: "no expert-ffn row with 1, 4 or 16 local experts to fit on")
        }
        func score(_ h: Hardware) -> Double {
            fitRows.reduce(0) { acc, r in
                let e = predicted(h, experts: r.experts, tokensPerExpert: r.tokensPerExpert) / r.micros - 1
                return acc + e * e
            }
        }
        var best = start
        if best.expertFFNStreamGBps == 0 { (best.expertFFNFixedMicros, best.expertFFNStreamGBps, best.expertFFNTFLOPS) = (10, 3000, 1000) }
        best = CoordinateSearch.minimize(best, parameters: fitParameters.searchSpace, rounds: rounds, score: score)
        for p in fitParameters { best[keyPath: p.field] = MeasuredCalibration.significant(best[keyPath: p.field]) }
        return best
    }
}
