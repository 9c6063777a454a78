import EventCore
import Foundation

/// Measured DeepEP low-latency kernels against the simulation, and a fit of a hardware
/// preset's communication parameters to chosen measured rows.
///
/// Every measured case becomes a scenario with the case's ranks, tokens, recorded routing
/// (or uniform routing for a DeepEP log) and injected spins as fixed compute kernels
/// (`ATTN0` before dispatch, `MLP` between dispatch and combine); fused rows run the `none`
/// schedule, hook rows `ATTN0 ATTN1 SHARED SEND-D RECV-D MLP SEND-C RECV-C` (compute
/// kernels of zero duration stand for none). A settled hook row's RECV was launched after
/// every message had arrived, so its simulated RECV time is the kernel's time less its
/// wait: the copy or reduce alone. Per rank, the simulated kernel times and end-to-end time
/// are compared with the measured medians.
public enum MeasuredCalibration {
    /// A compared time.
    public enum Metric: String, Sendable, CaseIterable {
        case dispatch, combine
        case dispatchSend = "dispatch_send"
        case dispatchRecv = "dispatch_recv"
        case combineSend = "combine_send"
        case combineRecv = "combine_recv"
        case endToEnd = "e2e"
    }

    /// One measured rank against its simulation.
    public struct Comparison: Sendable {
        public var measurement: DeepEPMeasurement
        /// In the fit (true) or held out.
        public var fitted: Bool
        public var measured: [Metric: Double]
        public var simulated: [Metric: Double]

        /// `simulated / measured - 1` of each metric both sides have.
        public var errors: [Metric: Double] {
            var out: [Metric: Double] = [:]
            for (m, v) in measured where v > 0 { if let s = simulated[m] { out[m] = s / v - 1 } }
            return out
        }

        /// The largest absolute error over the row's metrics.
        public var worstAbsError: Double { errors.values.map(abs).max() ?? 0 }

        /// One cell per metric both sides have, in ``Metric`` order:
        /// `dispatch 25.2 / 27.5 (+9.1%)` (measured / simulated µs, error).
        public var cells: [String] {
            Metric.allCases.compactMap { metric in
                guard let a = measured[metric], let b = simulated[metric] else { return nil }
                return String(format: "%@ %.1f / %.1f (%+.1f%%)", metric.rawValue, a, b, 100 * (b / a - 1))
            }
        }
    }

    /// Which rows a fit uses: each item is a group (`balanced`), a case name, or a prefix
    /// ending in `*` (`balanced-hook*`).
    public struct Selection: Sendable, CustomStringConvertible {
        public var items: [String]
        public init(_ items: [String]) { self.items = items }
        public init(parsing text: String) { items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        public func contains(_ m: DeepEPMeasurement) -> Bool {
            items.contains { item in
                if item.hasSuffix("*") { return m.caseName.hasPrefix(item.dropLast()) || m.group.hasPrefix(item.dropLast()) }
                return item == m.group || item == m.caseName
            }
        }
        public var description: String { items.joined(separator: ",") }
    }

    /// The measured times of a row (the metrics its mode has; no end-to-end time for a
    /// settled hook row, whose spins dominate it, nor for a DeepEP log, which has none).
    public static func measuredTimes(_ m: DeepEPMeasurement) -> [Metric: Double] {
        var out: [Metric: Double] = [:]
        let pairs: [(Metric, MeasuredTime?)] = [
            (.dispatch, m.dispatch), (.combine, m.combine), (.dispatchSend, m.dispatchSend), (.dispatchRecv, m.dispatchRecv),
            (.combineSend, m.combineSend), (.combineRecv, m.combineRecv), (.endToEnd, m.mode == .hookSettled ? nil : m.endToEnd),
        ]
        for (k, v) in pairs { if let v { out[k] = v.p50 } }
        return out
    }

    /// The scenario of a case (all its rows: one per rank) with `hardware`'s communication costs.
    public static func scenario(for rows: [DeepEPMeasurement], hardware: Hardware) throws -> Scenario {
        let first = rows[0]
        let n = first.ranks
        var pre = [Double](repeating: 0, count: n)
        var mid = [Double](repeating: 0, count: n)
        for r in rows {
            pre[r.rank] = r.preSpinMicros
            mid[r.rank] = r.midSpinMicros
        }
        func list(_ v: [Double]) -> String { "[" + v.map { String(format: "%.4f", $0) }.joined(separator: ", ") + "]" }
        let schedule =
            first.mode != .fused ? "{name: calibration-hook, body: ATTN0(A) ATTN1(A) SHARED(A) SEND-D(A) RECV-D(A) MLP(A) SEND-C(A) RECV-C(A)}" : "none"
        // The case name is data: quoted (JSON escapes are YAML's double-quoted escapes).
        let quotedName = String(data: try JSONEncoder().encode(first.caseName), encoding: .utf8) ?? "\"case\""
        let yaml = """
            name: \(quotedName)
            cluster: {ranks: \(n), gpus_per_node: \(first.gpusPerNode)}
            model: {hidden: \(first.hidden), experts: \(first.experts), top_k: \(first.topK), dispatch_dtype: fp8}
            workload: {tokens_per_rank: [\(first.tokensByRank.map(String.init).joined(separator: ", "))], routing: uniform, seed: 1}
            schedule: \(schedule)
            network: {model: ports}
            costs: {attn0_us: \(list(pre)), attn1_us: 0, shared_us: 0, gemm_us: \(list(mid))}
            """
        var s = try Scenario.parse(yaml: yaml, file: "\(first.source)#\(first.caseName)")
        if let routing = first.routing {
            s.workload.trace = RoutingTrace(selections: [-1: routing.experts], topK: first.topK)
            s.workload.routing = .trace
        }
        s.apply(hardware)
        return s
    }

    /// Simulated per-rank times of a scenario built by ``scenario(for:hardware:)``.
    static func simulatedTimes(_ result: RunResult, rank: Int, settled: Bool) -> [Metric: Double] {
        var out: [Metric: Double] = [:]
        for k in result.kernels where Int(k.rank) == rank {
            let settledRecv = settled && (k.kind == .recvDispatch || k.kind == .recvCombine)
            let metric: Metric?
            switch k.kind {
            case .dispatch: metric = .dispatch
            case .combine: metric = .combine
            case .sendDispatch: metric = .dispatchSend
            case .recvDispatch: metric = .dispatchRecv
            case .sendCombine: metric = .combineSend
            case .recvCombine: metric = .combineRecv
            default: metric = nil
            }
            if let metric { out[metric] = (settledRecv ? k.duration - k.wait : k.duration).micros }
        }
        out[.endToEnd] = result.rankStep(rank: rank, step: 0).latency.micros
        return out
    }

    /// The measurement's cases: rows grouped by file and case, each with every rank.
    static func cases(_ measurements: [DeepEPMeasurement]) throws -> [[DeepEPMeasurement]] {
        var order: [String] = []
        var byKey: [String: [DeepEPMeasurement]] = [:]
        for m in measurements {
            if byKey[m.caseKey] == nil { order.append(m.caseKey) }
            byKey[m.caseKey, default: []].append(m)
        }
        return try order.map { key in
            let rows = byKey[key]!.sorted { $0.rank < $1.rank }
            guard rows.map(\.rank) == Array(0..<rows[0].ranks) else {
                throw MeasurementError(file: rows[0].source, message: "case \(rows[0].caseName) needs one row per rank 0...\(rows[0].ranks - 1)")
            }
            return rows
        }
    }

    /// A case's simulation key: cases that would simulate identically share one run.
    struct SimulationKey: Hashable {
        var mode: String
        var ranks: Int, gpusPerNode: Int, hidden: Int, experts: Int, topK: Int
        var tokens: [Int]
        var spins: [Double]
        var routing: [[Int32]]?
    }

    static func key(_ rows: [DeepEPMeasurement]) -> SimulationKey {
        let f = rows[0]
        return SimulationKey(
            mode: f.mode.rawValue, ranks: f.ranks, gpusPerNode: f.gpusPerNode, hidden: f.hidden, experts: f.experts, topK: f.topK,
            tokens: f.tokensByRank, spins: rows.flatMap { [$0.preSpinMicros, $0.midSpinMicros] } + [f.settleMicros], routing: f.routing?.experts)
    }

    /// Prepared cases: scenarios built once, simulated once per distinct key.
    struct Prepared {
        var cases: [[DeepEPMeasurement]]
        var keys: [Int]
        var scenarios: [Scenario]

        init(_ measurements: [DeepEPMeasurement], hardware: Hardware) throws {
            cases = try MeasuredCalibration.cases(measurements)
            var index: [SimulationKey: Int] = [:]
            var scenarios: [Scenario] = []
            keys = try cases.map { rows in
                let k = MeasuredCalibration.key(rows)
                if let i = index[k] { return i }
                index[k] = scenarios.count
                scenarios.append(try MeasuredCalibration.scenario(for: rows, hardware: hardware))
                return scenarios.count - 1
            }
            self.scenarios = scenarios
        }

        /// Every row compared under `hardware`; `only` restricts the runs to some cases.
        func compare(_ hardware: Hardware, fitOn: Selection?, only: Set<Int>? = nil) throws -> [Comparison] {
            var results: [Int: RunResult] = [:]
            var out: [Comparison] = []
            for (c, rows) in cases.enumerated() where only?.contains(c) ?? true {
                let k = keys[c]
                if results[k] == nil {
                    var s = scenarios[k]
                    s.apply(hardware)
                    results[k] = try Simulation.run(s)
                }
                for m in rows {
                    out.append(
                        Comparison(
                            measurement: m, fitted: fitOn?.contains(m) ?? false, measured: measuredTimes(m),
                            simulated: simulatedTimes(results[k]!, rank: m.rank, settled: m.mode == .hookSettled)))
                }
            }
            return out
        }
    }

    /// Every measured row against the simulation under `hardware`.
    public static func compare(_ measurements: [DeepEPMeasurement], hardware: Hardware, fitOn: Selection? = nil) throws -> [Comparison] {
        try Prepared(measurements, hardware: hardware).compare(hardware, fitOn: fitOn)
    }

    /// The parameters the fit searches, with their ranges. RDMA is absent: NVLink-only
    /// measurements cannot see it.
    public static let fitParameters: [SearchedParameter] = [
        .init("nvlink_gbps", 20...2000), .init("nvlink_latency_us", 0.1...20),
        .init("self_copy_gbps", 20...20000), .init("launch_gap_us", 0.05...20),
        .init("dispatch_recv_pair_gbps", 1...5000), .init("combine_send_pair_gbps", 1...5000),
        .init("dispatch_send_fixed_us", 0.1...60), .init("dispatch_send_per_message_us", 1e-5...0.2),
        .init("dispatch_recv_fixed_us", 0.1...60), .init("dispatch_recv_copy_gbps", 20...20000),
        .init("combine_send_fixed_us", 0.1...60), .init("combine_send_per_message_us", 1e-5...0.2),
        .init("combine_recv_fixed_us", 0.1...60), .init("combine_recv_reduce_gbps", 20...20000),
    ]

    /// Where every fit starts, whatever the preset: `preset` with the searched fields set to
    /// the values EPSim had before any measurement (the H800 table's fit, NVLink scaled by
    /// 450/200), so that a fit depends on the measurements alone and reproduces exactly.
    public static func referenceStart(_ preset: Hardware) -> Hardware {
        var h = preset
        (h.nvlinkGBps, h.nvlinkLatencyMicros, h.selfCopyGBps, h.launchGapMicros) = (362.5, 2, 362.5, 0)
        (h.dispatchRecvPairGBps, h.combineSendPairGBps) = (1000, 1000)
        (h.dispatchSendFixedMicros, h.dispatchSendPerMessageMicros, h.dispatchRecvFixedMicros, h.dispatchRecvCopyGBps) = (1.98, 0.00634, 4.98, 520)
        (h.combineSendFixedMicros, h.combineSendPerMessageMicros, h.combineRecvFixedMicros, h.combineRecvReduceGBps) = (2.8, 0.00365, 2.22, 2051)
        return h
    }

    /// The fitted parameters whose value sits at an end of its search range: the rows pushed
    /// them there, so the model lacks something those rows show (or the rows are too few).
    public static func limitsReached(_ h: Hardware) -> [String] {
        fitParameters.filter { p in
            let v = h[keyPath: p.field]
            return v.isFinite && (v <= significant(p.range.lowerBound) || v >= significant(p.range.upperBound))
        }.map(\.name)
    }

    /// The fit's score: the sum of squared relative errors of every metric of the rows.
    public static func score(_ rows: [Comparison]) -> Double {
        // In a fixed order: a dictionary's order changes from process to process, and so would
        // the sum's last bits, and with them the search's path.
        rows.reduce(0) { acc, row in
            let e = row.errors
            return Metric.allCases.reduce(acc) { sum, m in e[m].map { sum + $0 * $0 } ?? sum }
        }
    }

    /// Rounds to `digits` significant digits (the fit's published precision).
    public static func significant(_ x: Double, _ digits: Int = 3) -> Double {
        guard x.isFinite, x != 0 else { return x }
        let scale = pow(10, Double(digits) - ceil(log10(abs(x))))
        return (x * scale).rounded() / scale
    }

    /// ``CoordinateSearch`` from ``referenceStart(_:)`` of `preset` over ``fitParameters``
    /// (the launch gap measured, not searched, when the rows recorded it), minimising
    /// ``score(_:)`` over the rows `on` selects. Deterministic, and independent of `preset`'s
    /// values for the searched fields. The result is rounded to 3 significant digits. Returns
    /// the fitted hardware and every row compared under it; ``limitsReached(_:)`` names the
    /// values that ended at the edge of their search range.
    /// - Throws: ``MeasurementError`` when no row matches `selection`.
    public static func fit(
        _ measurements: [DeepEPMeasurement], on selection: Selection, preset: Hardware, rounds: Int = 10
    ) throws -> (Hardware, [Comparison]) {
        let start = referenceStart(preset)
        let prepared = try Prepared(measurements, hardware: start)
        let fitCases = Set(prepared.cases.indices.filter { prepared.cases[$0].contains(where: selection.contains) })
        guard !fitCases.isEmpty else {
            throw MeasurementError(file: "--fit-on", message: "no measured row matches \(selection) (groups: \(Set(measurements.map(\.group)).sorted().joined(separator: ", ")))")
        }
        func evaluate(_ h: Hardware) throws -> Double { score(try prepared.compare(h, fitOn: selection, only: fitCases)) }
        var best = start
        // The launch gap is measured, not fitted: the median idle time between the dispatch
        // and the combine kernels of the fitted rows that recorded it.
        let gaps = measurements.filter(selection.contains).compactMap(\.launchGapMicros).sorted()
        let searched = fitParameters.filter { !(gaps.count > 0 && $0.name == "launch_gap_us") }
        if !gaps.isEmpty { best.launchGapMicros = gaps[gaps.count / 2] }
        best = try CoordinateSearch.minimize(best, parameters: searched.map { ($0.field, $0.range) }, rounds: rounds, score: evaluate)
        let bestScore = try evaluate(best)
        // A warp-group rate that the rows do not constrain (no fitted row has a hot pair) means
        // no limit: infinite, whatever the preset says, so that the fit depends on the rows alone.
        for field in [\Hardware.dispatchRecvPairGBps, \Hardware.combineSendPairGBps] {
            var candidate = best
            candidate[keyPath: field] = .infinity
            if try evaluate(candidate) <= bestScore * (1 + 1e-9) { best = candidate }
        }
        for p in fitParameters { best[keyPath: p.field] = significant(best[keyPath: p.field]) }
        return (best, try prepared.compare(best, fitOn: selection))
    }

    /// Mean and worst absolute relative error of a metric over rows.
    public struct Summary: Sendable {
        public var metric: Metric
        public var rows: Int
        public var meanAbsError: Double
        public var worstError: Double
    }

    /// Per metric: mean and worst absolute error over `rows` (metrics no row has are left out).
    public static func summarize(_ rows: [Comparison]) -> [Summary] {
        Metric.allCases.compactMap { metric in
            let errors = rows.compactMap { $0.errors[metric] }
            guard !errors.isEmpty else { return nil }
            let worst = errors.max { abs($0) < abs($1) }!
            return Summary(metric: metric, rows: errors.count, meanAbsError: errors.reduce(0) { $0 + abs($1) } / Double(errors.count), worstError: worst)
        }
    }

    /// The fitted parameters as a scenario's `hardware:` block (paste it into a scenario).
    public static func yamlBlock(_ h: Hardware, preset: String) -> String {
        fitParameters.yamlBlock(h, preset: preset)
    }
}
