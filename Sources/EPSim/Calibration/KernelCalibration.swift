import Foundation

/// The production compute kernels measured by `calibration/kernels/measure_kernels.py`
/// (DeepGEMM, FlashMLA, the activation's quantisation) against ``MeasuredCompute``'s models,
/// and their fit: each family fitted on some rows and judged on the others.
public enum KernelCalibration {
    /// The kernel families, as `measure_kernels.py --family` names them (its CSV files).
    public enum Family: String, Sendable, CaseIterable {
        case expertGEMM = "expert-gemm"
        case activation = "act-quant"
        case projection = "proj-gemm"
        case absorbed = "absorbed-bmm"
        case attention = "flash-mla"

        /// What the family is, for tables.
        public var title: String {
            switch self {
            case .expertGEMM: return "expert GEMM (DeepGEMM masked grouped FP8)"
            case .activation: return "SiLU-and-mul + FP8 quantisation (Triton)"
            case .projection: return "projections (DeepGEMM dense FP8)"
            case .absorbed: return "absorbed MLA products (torch.bmm BF16)"
            case .attention: return "core attention (FlashMLA dense decode)"
            }
        }
    }

    /// One measured operation: its shape and its median time (every kernel it launched).
    public struct Row: Sendable {
        public var file: String
        public var line: Int
        public var family: Family
        public var name: String
        public var routing: String
        /// Rows per local expert (expert GEMM, activation); empty elsewhere.
        public var tokensByExpert: [Int]
        /// The mean rows per expert the case asked for (`expected_m`).
        public var tokensPerExpert: Int
        public var tokens: Int
        public var n: Int
        public var k: Int
        /// Requests (FlashMLA) or heads (the absorbed products).
        public var batch: Int
        public var queryTokens: Int
        /// Cached tokens of each request (FlashMLA).
        public var kvByRequest: [Int]
        /// Median µs of the operation's main kernel plus any other kernel it launched
        /// (FlashMLA's split-KV combine).
        public var micros: Double
        public var p10: Double
        public var p90: Double

        /// The row's case, for tables.
        public var label: String {
            switch family {
            case .expertGEMM, .activation:
                return "\(name) \(routing) \(tokensByExpert.count)x\(tokensPerExpert) (max \(tokensByExpert.max() ?? 0))"
            case .projection, .absorbed:
                return "\(name) t=\(tokens)"
            case .attention:
                return "b=\(batch) kv=\(kvByRequest.reduce(0, +) / max(1, batch)) s_q=\(queryTokens) \(routing)"
            }
        }
    }

    /// Reads one `measure_kernels.py` CSV (any family); errors name the file and line.
    public static func read(path: String) throws -> [Row] {
        return try CSVTable(path: path).rows.map { r in
            func optInt(_ c: String, _ range: ClosedRange<Int>) throws -> Int { try r.optionalInt(c, in: range) }
            func list(_ c: String) throws -> [Int] {
                let v = try r.raw(c)
                guard !v.isEmpty else { return [] }
                return try v.split(separator: "/", omittingEmptySubsequences: false).map {
                    guard let i = Int($0), (0...1_048_576).contains(i) else {
                        throw r.fail("column \(c): expected counts separated by '/', found \"\(v)\"")
                    }
                    return i
                }
            }
            let familyName = try r.string("family")
            let name = try r.string("name")
            var family: Family
            switch familyName {
            case "expert-gemm": family = .expertGEMM
            case "act-quant": family = .activation
            case "flash-mla": family = .attention
            case "proj-gemm": family = name.hasSuffix("-bmm") ? .absorbed : .projection
            default:
                throw r.fail("column family: expected expert-gemm, act-quant, proj-gemm or flash-mla, found \"\(familyName)\"")
            }
            let main = try r.double("us_p50")
            let other = try r.raw("other_us_p50").isEmpty ? 0 : try r.double("other_us_p50")
            var row = Row(
                file: path, line: r.line, family: family, name: name, routing: String(try r.raw("routing")),
                tokensByExpert: try list("tokens_by_expert"), tokensPerExpert: try optInt("tokens_per_expert", 0...1_048_576),
                tokens: try optInt("tokens", 0...ScenarioLimits.maxTokensPerRank), n: try optInt("n", 0...1_048_576),
                k: try optInt("k", 0...1_048_576), batch: try optInt("batch", 0...1_048_576), queryTokens: try optInt("s_q", 0...64),
                kvByRequest: try list("kv_by_request"), micros: main + other, p10: try r.double("us_p10") + other,
                p90: try r.double("us_p90") + other)
            guard main > 0 else { throw r.fail("column us_p50: a kernel time must be positive, found \(main)") }
            switch family {
            case .expertGEMM, .activation:
                guard !row.tokensByExpert.isEmpty else { throw r.fail("column tokens_by_expert: a \(familyName) row needs each expert's rows") }
                guard row.n > 0, row.k > 0 else { throw r.fail("columns n, k: a \(familyName) row needs its GEMM shape") }
            case .projection, .absorbed:
                guard row.tokens > 0, row.n > 0, row.k > 0 else { throw r.fail("columns tokens, n, k: a GEMM row needs its shape") }
            case .attention:
                guard row.batch > 0, row.queryTokens > 0 else { throw r.fail("columns batch, s_q: a flash-mla row needs them") }
                if row.kvByRequest.isEmpty {
                    let kv = try optInt("kv_length", 1...10_000_000)
                    guard kv > 0 else { throw r.fail("column kv_length: a flash-mla row needs its cached tokens") }
                    row.kvByRequest = Array(repeating: kv, count: row.batch)
                }
                guard row.kvByRequest.count == row.batch else {
                    throw r.fail("column kv_by_request: \(row.kvByRequest.count) lengths for batch \(row.batch)")
                }
            }
            return row
        }
    }

    /// Reads every family's CSV in `folder` (`expert-gemm.csv`, `act-quant.csv`,
    /// `proj-gemm.csv`, `flash-mla.csv`; absent ones skipped), or one CSV file.
    public static func load(_ path: String) throws -> [Row] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw MeasurementError(file: path, message: "no such file or folder")
        }
        guard isDirectory.boolValue else { return try read(path: path) }
        var rows: [Row] = []
        for f in ["expert-gemm.csv", "act-quant.csv", "proj-gemm.csv", "flash-mla.csv"] {
            let p = (path as NSString).appendingPathComponent(f)
            if FileManager.default.fileExists(atPath: p) { rows += try read(path: p) }
        }
        guard !rows.isEmpty else { throw MeasurementError(file: path, message: "no measure_kernels.py CSV (expert-gemm.csv, act-quant.csv, proj-gemm.csv, flash-mla.csv) in the folder") }
        return rows
    }

    /// What `hardware`'s measured models give for a row's operation, µs.
    public static func predicted(_ row: Row, on hardware: Hardware) -> Double {
        let m = hardware.measured
        switch row.family {
        case .expertGEMM:
            return m.expertGEMMMicros(rows: row.tokensByExpert, n: row.n, k: row.k, expectedM: max(1, row.tokensPerExpert), on: hardware)
        case .activation:
            return m.activationMicros(rows: row.tokensByExpert, intermediate: row.n, on: hardware)
        case .projection:
            return m.projectionMicros(tokens: row.tokens, n: row.n, k: row.k, on: hardware)
        case .absorbed:
            return m.absorbedMicros(heads: row.batch, tokens: row.tokens, n: row.n, k: row.k, on: hardware)
        case .attention:
            // DeepSeek-V3's MLA in MQA mode, as measured: 128 heads, d_qk 576, d_v 512, BF16 cache.
            return m.attentionCoreMicros(
                requests: row.batch, queryTokens: row.queryTokens, kvTokens: Double(row.kvByRequest.reduce(0, +)), heads: 128, dQK: 576,
                dV: 512, kvBytes: 2, on: hardware)
        }
    }

    /// Which rows the shipped fit uses; every other row is held out. Expert GEMM and the
    /// activation: equal routing at 1, 4 and 16 local experts (2, 8, 32 and all uniform and
    /// hot-expert rows held out); projections: q_a+kv_a, o_proj and the shared expert's
    /// gate-up (q_b and the shared down held out); absorbed products: W_UK (W_UV held out);
    /// core attention: equal lengths at 1, 16, 64 and 256 requests (4, 32, 128 and the mixed
    /// lengths held out).
    public static func isFitRow(_ r: Row) -> Bool {
        guard isModelled(r) else { return false }
        switch r.family {
        case .expertGEMM, .activation: return r.routing == "equal" && [1, 4, 16].contains(r.tokensByExpert.count)
        case .projection: return ["qkv_a", "o_proj", "shared-gate-up"].contains(r.name)
        case .absorbed: return r.name == "w_uk-bmm"
        case .attention: return r.routing == "equal" && [1, 16, 64, 256].contains(r.batch)
        }
    }

    /// Whether EPSim models the row's operation: not an expert GEMM or activation over no rows
    /// at all (the measured empty call costs 1.4-4.3 µs; EPSim gives a rank that receives
    /// nothing no `MLP` kernel). Such rows are listed but in neither error set.
    public static func isModelled(_ r: Row) -> Bool {
        switch r.family {
        case .expertGEMM, .activation: return r.tokensByExpert.contains { $0 > 0 }
        default: return true
        }
    }

    /// The fitted fields of each family, with their search ranges.
    public static func parameters(_ family: Family) -> [SearchedParameter] {
        switch family {
        case .expertGEMM:
            return [
                .init("expert_gemm_fixed_us", 0...100), .init("expert_gemm_stream_gbps", 100...6000), .init("expert_gemm_tflops", 10...2000),
                .init("expert_gemm_overlap", 0...1), .init("expert_gemm_reread", 0...1), .init("expert_gemm_k_block_us", 0...10),
            ]
        case .activation:
            return [.init("activation_fixed_us", 0...100), .init("activation_stream_gbps", 10...6000), .init("activation_row_us", 0...10)]
        case .projection:
            return [
                .init("projection_fixed_us", 0...100), .init("projection_stream_gbps", 100...6000), .init("projection_tflops", 10...2000),
                .init("projection_overlap", 0...1), .init("projection_k_block_us", 0...10),
            ]
        case .absorbed:
            return [
                .init("absorbed_bmm_fixed_us", 0...100), .init("absorbed_bmm_stream_gbps", 100...6000),
                .init("absorbed_bmm_tflops", 10...1000), .init("absorbed_bmm_overlap", 0...1),
            ]
        case .attention:
            return [
                .init("attention_core_fixed_us", 0...200), .init("attention_core_stream_gbps", 100...6000),
                .init("attention_core_tflops", 10...1000), .init("attention_core_overlap", 0...1), .init("attention_core_request_us", 0...10),
            ]
        }
    }

    /// Starting points of a fit: the reference GPU's HBM x 0.8 and the precision's peak x 0.6
    /// (BF16 for core attention and the absorbed products), 5 µs fixed, the row and request
    /// terms 0.05 µs, and the shares (overlap, re-read) at 0.1, 0.5 and 0.9 in turn.
    static func seeds(_ hardware: Hardware, _ family: Family) -> [Hardware] {
        let bf16 = family == .absorbed || family == .attention
        return [0.1, 0.5, 0.9].map { share in
            var h = hardware
            for p in parameters(family) {
                let key = p.name
                h[keyPath: p.field] =
                    key.hasSuffix("_gbps") ? hardware.hbmGBps * 0.8
                    : key.hasSuffix("_tflops") ? (bf16 ? hardware.peakBF16TFLOPS : hardware.peakFP8TFLOPS) * 0.6
                    : key.hasSuffix("_fixed_us") ? 5 : key.hasSuffix("_k_block_us") ? 0.02 : key.hasSuffix("_us") ? 0.05 : share
            }
            return h
        }
    }

    /// Fits every family present in `rows` on its ``isFitRow(_:)`` rows, starting from `start`
    /// (the GPU's nominal figures become the models' reference), minimising the sum of
    /// squared relative errors with ``CoordinateSearch`` from each of ``seeds(_:_:)`` and
    /// keeping the best; values rounded to 3 significant digits. Deterministic. Throws when a
    /// family has rows but none to fit on.
    public static func fit(_ rows: [Row], start: Hardware, source: String) throws -> Hardware {
        var hw = start
        hw.measured.reference = .init(name: start.name, hbmGBps: start.hbmGBps, peakFP8TFLOPS: start.peakFP8TFLOPS, peakBF16TFLOPS: start.peakBF16TFLOPS)
        hw.measured.source = source
        for family in Family.allCases {
            let all = rows.filter { $0.family == family }
            guard !all.isEmpty else { continue }
            let fitRows = all.filter(isFitRow)
            guard !fitRows.isEmpty else {
                throw MeasurementError(file: all[0].file, message: "no \(family.rawValue) row to fit on (\(family.title))")
            }
            func score(_ h: Hardware) -> Double {
                fitRows.reduce(0) { acc, r in
                    let e = predicted(r, on: h) / r.micros - 1
                    return acc + e * e
                }
            }
            var best: (Hardware, Double)?
            for seed in seeds(hw, family) {
                let h = CoordinateSearch.minimize(seed, parameters: parameters(family).searchSpace, score: score)
                let s = score(h)
                if best == nil || s < best!.1 { best = (h, s) }
            }
            hw = best!.0
            for p in parameters(family) { hw[keyPath: p.field] = MeasuredCalibration.significant(hw[keyPath: p.field]) }
        }
        return hw
    }

    /// Mean and worst absolute relative error of a set of rows, and their count.
    public struct Errors: Sendable {
        public var count: Int
        public var meanAbs: Double
        /// The signed error of largest magnitude, and its row.
        public var worst: Double
        public var worstRow: Row?
    }

    public static func errors(_ rows: [Row], on hardware: Hardware) -> Errors {
        var e = Errors(count: rows.count, meanAbs: 0, worst: 0, worstRow: nil)
        guard !rows.isEmpty else { return e }
        var sum = 0.0
        for r in rows {
            let x = predicted(r, on: hardware) / r.micros - 1
            sum += abs(x)
            if abs(x) > abs(e.worst) { (e.worst, e.worstRow) = (x, r) }
        }
        e.meanAbs = sum / Double(rows.count)
        return e
    }

    /// The per-family summary: family, fit rows' errors, held-out rows' errors.
    public static func summary(_ rows: [Row], on hardware: Hardware) -> [(family: Family, fit: Errors, heldOut: Errors)] {
        Family.allCases.compactMap { f in
            let all = rows.filter { $0.family == f && isModelled($0) }
            guard !all.isEmpty else { return nil }
            return (f, errors(all.filter(isFitRow), on: hardware), errors(all.filter { !isFitRow($0) }, on: hardware))
        }
    }
}
