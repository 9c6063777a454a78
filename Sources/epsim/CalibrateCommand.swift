import ArgumentParser
import EPSim
import Foundation

/// `epsim calibrate`: the simulation against measurements (DeepEP's published table, the
/// harness's CSVs, DeepEP test logs), and fits of a preset's communication parameters.
///
/// ```
/// $ epsim calibrate                                             # DeepEP's published H800 table
/// $ epsim calibrate --measurements calibration/measurements/*-h200x2-*/ll.csv
/// $ epsim calibrate --measurements my-cluster.log --fit --preset h200
/// $ epsim calibrate --markdown docs/validation.md               # regenerate the docs page
/// ```
struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Compare the simulation with measured DeepEP low-latency kernels, and fit a preset's communication parameters.",
        discussion:
            "Without --measurements: DeepEP's published H800 table (Scenarios/calibration). With --measurements: the harness's ll.csv files (calibration/deepep; routing.csv and ll-run.json beside each) and DeepEP test_low_latency.py logs (their rows are in group deepep-log). A log does not say its tokens or sizes: --log-* give them for every log (defaults: DeepEP's test defaults), or a log's own settings follow its path, e.g. run.log:tokens=32,experts=256. --fit fits the NVLink, self-copy, warp-group and kernel-cost parameters on the rows --fit-on selects (the launch gap is taken as measured), reports every other row as held out, and prints the result as a hardware: block to paste into a scenario. Exit status 65 for a bad file, 64 for bad arguments, 73 for an output file that cannot be written.")

    @Option(help: "Folder of the published-table scenarios (default: the package's, from any directory).")
    var scenarios = PackagePaths.resolve("Scenarios/calibration")

    @Option(parsing: .upToNextOption, help: "Measurement files: the harness's ll.csv, or DeepEP test logs.")
    var measurements: [String] = []

    @Option(help: "A compute measurement (measure_compute.py's compute.csv): the routed experts' grouped FFN against the preset's cost model (--fit: fit it).")
    var compute: String?

    @Option(
        parsing: .upToNextOption,
        help: "Production-kernel measurements (calibration/kernels/measure_kernels.py): sitting folders or their CSVs; compared with the preset's measured models (--fit: fit them on the fit rows, report the rest as held out; --preset must then name the GPU they ran on, e.g. h100 for the shipped sittings).")
    var kernels: [String] = []

    @Option(help: "With --compute: write the measured SHARED and DENSE times as a costs.table CSV to this path.")
    var table: String?

    @Option(name: .customLong("table-dtype"), help: "The dtype of the --table rows: fp8 or bf16.")
    var tableDtype = "fp8"

    @Flag(help: "Fit the preset's parameters (with --measurements: the communication parameters; without: the h800 preset to DeepEP's table).")
    var fit = false

    @Option(name: .customLong("fit-on"), help: "Rows to fit on: groups, case names or prefixes ending in *, comma-separated.")
    var fitOn = "balanced"

    @Option(help: "The preset the fit starts from and the printed block names (h800, h100, h200).")
    var preset = "h200"

    @Flag(help: "Print every compared row, not only the summaries and the worst rows.")
    var rows = false

    @Option(name: .customLong("log-tokens"), help: "Tokens per rank of the DeepEP logs (--num-tokens).")
    var logTokens = 128
    @Option(name: .customLong("log-experts"), help: "Experts of the DeepEP logs (--num-experts).")
    var logExperts = 288
    @Option(name: .customLong("log-hidden"), help: "Hidden size of the DeepEP logs (--hidden).")
    var logHidden = 7168
    @Option(name: .customLong("log-top-k"), help: "Top-k of the DeepEP logs (--num-topk).")
    var logTopK = 8
    @Option(name: .customLong("log-gpus-per-node"), help: "GPUs per node of the DeepEP logs' cluster.")
    var logGPUsPerNode = 8

    @Option(help: "Write the validation page (published table, shipped measurements, public H100 points, GEMM table) to this path.")
    var markdown: String?

    func validate() throws {
        guard Hardware.preset(preset) != nil else {
            throw ValidationError("--preset must be one of \(Hardware.presetNames.joined(separator: ", ")), found \"\(preset)\"")
        }
        for (name, v, range) in [
            ("--log-tokens", logTokens, 0...1_048_576), ("--log-experts", logExperts, 1...65536), ("--log-hidden", logHidden, 128...65536),
            ("--log-top-k", logTopK, 1...64), ("--log-gpus-per-node", logGPUsPerNode, 1...1024),
        ] where !range.contains(v) {
            throw ValidationError("\(name) must be in \(range.lowerBound)...\(range.upperBound), found \(v)")
        }
        if logHidden % 128 != 0 { throw ValidationError("--log-hidden must be a multiple of 128, found \(logHidden)") }
        if logTopK > logExperts { throw ValidationError("--log-top-k must be at most --log-experts") }
        if Selection(parsing: fitOn).items.isEmpty { throw ValidationError("--fit-on needs at least one group or case name") }
        if !["fp8", "bf16"].contains(tableDtype) { throw ValidationError("--table-dtype must be fp8 or bf16, found \"\(tableDtype)\"") }
        if table != nil && compute == nil { throw ValidationError("--table needs --compute (the measurements to take the times from)") }
        try validateOutputPath(markdown, option: "--markdown")
        try validateOutputPath(table, option: "--table")
        try validateDistinctOutputs(
            [("--markdown", markdown), ("--table", table)], inputs: measurements.map { ("a measurement file", $0) } + [("the --compute file", compute)])
        var isDirectory: ObjCBool = false
        if !kernels.isEmpty && (compute != nil || !measurements.isEmpty) {
            throw ValidationError("--kernels cannot be combined with --compute or --measurements (one kind of measurement at a time)")
        }
        let usesScenarios = markdown != nil || (measurements.isEmpty && compute == nil && kernels.isEmpty)
        if usesScenarios, !(FileManager.default.fileExists(atPath: scenarios, isDirectory: &isDirectory) && isDirectory.boolValue) {
            throw ValidationError("--scenarios \(scenarios): expected the folder of the published-table scenarios (deepep-ll-ep*.yaml)")
        }
    }

    typealias Selection = MeasuredCalibration.Selection

    func run() throws {
        do {
            if let markdown {
                let page = try ValidationPage.render(scenarios: scenarios, measurements: PackagePaths.resolve("calibration/measurements"))
                try write(page, to: markdown)
                return
            }
            if !kernels.isEmpty {
                try productionKernels(kernels)
            } else if let compute {
                try computeKernels(compute)
            } else if measurements.isEmpty {
                try published()
            } else {
                try measured()
            }
        } catch let error as ScenarioError {
            printError("error: \(error)")
            throw ExitCode(65)
        } catch let error as MeasurementError {
            printError("error: \(error)")
            throw ExitCode(error.file == "--fit-on" ? 64 : 65)
        }
    }

    /// Writes an output file, or says why not (exit 73).
    func write(_ text: String, to path: String) throws {
        try writeOutput(text, to: path, what: "the file")
        print("wrote \(path)")
    }

    /// `--kernels`: the measured production kernels against the preset's models, or fitted.
    func productionKernels(_ paths: [String]) throws {
        var all: [KernelCalibration.Row] = []
        for p in paths { all += try KernelCalibration.load(p) }
        var start = Hardware.preset(preset)!
        let hardware: Hardware
        if fit {
            start.measured = MeasuredCompute()
            hardware = try KernelCalibration.fit(all, start: start, source: paths.joined(separator: ","))
        } else {
            hardware = start
            guard hardware.measured.isPresent else {
                throw MeasurementError(file: paths[0], message: "preset \(preset) has no measured kernel models to compare with (use --fit)")
            }
        }
        if rows {
            let table = all.map { r -> [String] in
                let p = KernelCalibration.predicted(r, on: hardware)
                return [r.family.rawValue, r.label, RunReport.us(r.micros), RunReport.us(p), CalibrationReport.pct(p / r.micros - 1),
                        !KernelCalibration.isModelled(r) ? "not modelled" : KernelCalibration.isFitRow(r) ? "fit" : "held out"]
            }
            print(TextTable.render(header: ["family", "case", "measured_us", "model_us", "error", "rows"], rows: table), terminator: "")
        }
        func mean(_ e: KernelCalibration.Errors) -> String { e.count == 0 ? "-" : String(format: "%.1f%%", 100 * e.meanAbs) }
        func worst(_ e: KernelCalibration.Errors) -> String { e.count == 0 ? "-" : CalibrationReport.pct(e.worst) }
        let summary = KernelCalibration.summary(all, on: hardware).map { s -> [String] in
            [s.family.rawValue, String(s.fit.count), mean(s.fit), worst(s.fit), String(s.heldOut.count), mean(s.heldOut), worst(s.heldOut),
             s.heldOut.worstRow?.label ?? "-"]
        }
        print(TextTable.render(
            header: ["family", "fit_rows", "fit_mean", "fit_worst", "held_out_rows", "held_out_mean", "held_out_worst", "worst_case"], rows: summary),
            terminator: "")
        if fit {
            printError(
                "note: fitted as measured on \(preset) (hbm_gbps \(String(format: "%g", start.hbmGBps)), peak_fp8_tflops \(String(format: "%g", start.peakFP8TFLOPS)), peak_bf16_tflops \(String(format: "%g", start.peakBF16TFLOPS))): --preset must name the GPU the kernels ran on; the block carries it as measured_* so that other presets scale from it")
            let reference = ["measured_hbm_gbps", "measured_peak_fp8_tflops", "measured_peak_bf16_tflops"].map { SearchedParameter($0, 0...1e7) }
            let keys = KernelCalibration.Family.allCases.filter { f in all.contains { $0.family == f } }.flatMap(KernelCalibration.parameters)
            print((keys + reference).yamlBlock(hardware, preset: preset), terminator: "")
        } else if let note = hardware.measured.extrapolationNote(for: hardware) {
            printError("note: \(note)")
        }
    }

    func computeKernels(_ path: String) throws {
        let all = try ComputeCalibration.read(path: path)
        if let table { try write(ComputeCalibration.table(all, dtype: tableDtype), to: table) }
        let rows = ComputeCalibration.expertRows(all)
        guard !rows.isEmpty else { throw MeasurementError(file: path, message: "no expert-ffn fp8 row") }
        let hardware = fit ? try ComputeCalibration.fit(rows, start: Hardware.preset(preset)!) : Hardware.preset(preset)!
        let table = rows.map { r -> [String] in
            let p = ComputeCalibration.predicted(hardware, experts: r.experts, tokensPerExpert: r.tokensPerExpert)
            return [String(r.experts), String(r.tokensPerExpert), RunReport.us(r.micros), RunReport.us(p), CalibrationReport.pct(p / r.micros - 1),
                    ComputeCalibration.isFitRow(r) ? "fit" : "held out"]
        }
        print(TextTable.render(header: ["experts", "tokens_per_expert", "measured_us", "model_us", "error", "rows"], rows: table), terminator: "")
        for (label, part) in [("fit", rows.filter(ComputeCalibration.isFitRow)), ("held out", rows.filter { !ComputeCalibration.isFitRow($0) })] where !part.isEmpty {
            let errors = part.map { ComputeCalibration.predicted(hardware, experts: $0.experts, tokensPerExpert: $0.tokensPerExpert) / $0.micros - 1 }
            let worst = errors.max { abs($0) < abs($1) }!
            print(String(format: "%@ rows (1, 4, 16 local experts%@): mean error %.1f%%, worst %+.1f%%", label, label == "fit" ? "" : ": the others",
                         100 * errors.map(abs).reduce(0, +) / Double(errors.count), 100 * worst))
        }
        if fit {
            print("\nfitted (paste into a scenario):\n")
            print(ComputeCalibration.fitParameters.yamlBlock(hardware, preset: preset), terminator: "")
        }
    }

    func published() throws {
        let (hardware, rows) = fit ? try DeepEPCalibration.fit(directory: scenarios) : (Hardware.h800, try DeepEPCalibration.run(directory: scenarios))
        let table = rows.map { r in
            [
                String(r.ep), String(r.experts), RunReport.us(r.published.dispatchMicros), RunReport.us(r.dispatchMicros),
                String(format: "%+.1f%%", 100 * r.dispatchError), RunReport.us(r.published.combineMicros), RunReport.us(r.combineMicros),
                String(format: "%+.1f%%", 100 * r.combineError),
            ]
        }
        print(
            TextTable.render(
                header: ["ep", "experts", "dispatch_pub_us", "dispatch_sim_us", "error", "combine_pub_us", "combine_sim_us", "error"], rows: table),
            terminator: "")
        print(String(format: "worst error: %.1f%%", 100 * DeepEPCalibration.worstError(rows)))
        if fit {
            print("\nfitted links (paste into a scenario):\n")
            print(DeepEPCalibration.fitParameters.yamlBlock(hardware, preset: "h800"), terminator: "")
        }
    }

    func measured() throws {
        var settings = MeasurementReader.LogSettings()
        settings.tokens = logTokens
        settings.experts = logExperts
        settings.hidden = logHidden
        settings.topK = logTopK
        settings.gpusPerNode = logGPUsPerNode
        var all: [DeepEPMeasurement] = []
        var notes: [String] = []
        for spec in measurements {
            let (path, own): (String, MeasurementReader.LogSettings)
            do {
                (path, own) = try settings.applying(spec)
            } catch let error as MeasurementError {
                throw ValidationError("\(error.file): \(error.message)")
            }
            all += try MeasurementReader.read(path: path, log: own, notes: &notes)
        }
        guard Set(all.map { "\($0.caseKey)#\($0.rank)" }).count == all.count else {
            throw ValidationError("a measurement file is given twice")
        }
        for n in notes { printError("note: \(n)") }
        let start = Hardware.preset(preset)!
        let selection = Selection(parsing: fitOn)
        let hardware: Hardware
        let compared: [MeasuredCalibration.Comparison]
        if fit {
            (hardware, compared) = try MeasuredCalibration.fit(all, on: selection, preset: start)
        } else {
            hardware = start
            compared = try MeasuredCalibration.compare(all, hardware: start)
        }
        print("\(all.count) measured rows in \(Set(all.map(\.caseKey)).count) cases; preset \(preset)\(fit ? ", fitted on \(selection)" : "")\n")
        print(CalibrationReport.summaryTable(compared, fit: fit), terminator: "")
        print("")
        print(rows ? "every row:" : "the 10 rows with the largest error:")
        print(CalibrationReport.rowTable(compared, limit: rows ? nil : 10, fit: fit), terminator: "")
        if fit {
            print("\nfitted parameters (paste into a scenario):\n")
            print(MeasuredCalibration.yamlBlock(hardware, preset: preset), terminator: "")
            let limits = MeasuredCalibration.limitsReached(hardware)
            if !limits.isEmpty {
                print("\nnote: \(limits.joined(separator: ", ")) ended at the edge of the search range: the fit rows do not determine them well")
            }
        }
    }
}

/// Text tables of a measured comparison.
enum CalibrationReport {
    static func pct(_ x: Double) -> String { String(format: "%+.1f%%", 100 * x) }

    /// Mean and worst error per metric, fit rows and held-out rows apart.
    static func summaryTable(_ rows: [MeasuredCalibration.Comparison], fit: Bool) -> String {
        var out: [[String]] = []
        let parts: [(String, [MeasuredCalibration.Comparison])] =
            fit ? [("fit", rows.filter(\.fitted)), ("held out", rows.filter { !$0.fitted })] : [("all", rows)]
        for (label, part) in parts {
            for s in MeasuredCalibration.summarize(part) {
                out.append([label, s.metric.rawValue, String(s.rows), String(format: "%.1f%%", 100 * s.meanAbsError), pct(s.worstError)])
            }
        }
        return TextTable.render(header: ["rows", "metric", "n", "mean_abs_error", "worst_error"], rows: out)
    }

    /// One line per (case, rank): measured and simulated per metric.
    static func rowTable(_ rows: [MeasuredCalibration.Comparison], limit: Int?, fit: Bool) -> String {
        var chosen = rows
        if let limit { chosen = Array(rows.sorted { $0.worstAbsError > $1.worstAbsError }.prefix(limit)) }
        let table = chosen.map { c -> [String] in
            let m = c.measurement
            let file = m.sitting + "/" + (m.source as NSString).lastPathComponent
            return [file, m.caseName, String(m.rank), fit ? (c.fitted ? "fit" : "held out") : "-", c.cells.joined(separator: ", ")]
        }
        return TextTable.render(header: ["file", "case", "rank", "rows", "measured/simulated us (error)"], rows: table)
    }
}
