import ArgumentParser
import EPSim
import EPSimStore
import Foundation

/// `epsim serve FILE`: a serving run (requests arriving, assigned to DP-attention ranks,
/// decoded step by step, leaving), or with `--vary` several compared side by side.
///
/// ```
/// $ epsim serve Scenarios/serve-ep128.yaml --vary serving.policy=round-robin,least-kv --plot /tmp/serve.svg
/// ```
///
/// Exit status: 0; 64 bad arguments; 65 a bad scenario; 70 a simulation failure; 73 an
/// output (CSV, plot) that cannot be written; 74 a database that cannot be used; 130/143
/// stopped by SIGINT/SIGTERM (the steps finished so far are reported and stored).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Simulate decode serving: requests arrive, are balanced over DP-attention ranks, decode and leave.")

    @Argument(help: "Scenario YAML file with a serving section.")
    var scenario: String

    @Option(name: .customLong("vary"), help: "key.path=value1,value2,... (repeatable): compare serving runs, e.g. serving.policy=round-robin,least-kv.")
    var vary: [String] = []

    @Option(help: "Parallel workers for --vary (default: all cores; each run also uses a second thread for its counterfactual).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Output format: table, json or csv (one row per run).")
    var format: ServeFormat = .table

    @Option(help: "Write each run's steps, rank-steps and requests as CSV files into this folder.")
    var csvDir: String?

    @Option(help: "Write an SVG: one run: requests and KV per rank over time; several: TPOT distribution and imbalance per run.")
    var plot: String?

    @Flag(help: "Do not store the runs.")
    var noStore = false

    @OptionGroup var database: DatabaseOptions

    enum ServeFormat: String, ExpressibleByArgument { case table, json, csv }

    func validate() throws {
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        do { _ = try Sweep(varying: vary) } catch let error as SweepError { throw ValidationError(error.description) }
        try validateOutputPath(plot, option: "--plot")
        try validateOutputFolder(csvDir, option: "--csv-dir")
        try validateDistinctOutputs([("--plot", plot)], inputs: [("the scenario", scenario), ("the run database", noStore ? nil : database.resolvedPath)])
    }

    func run() throws {
        let sweep = try Sweep(varying: vary)
        let runner = SweepRunner(scenarioPath: PackagePaths.resolve(scenario), points: sweep.points)
        let signals = StopSignals(
            runner, inFlight: noStore ? "the decode step in flight" : "the decode step in flight, then storing the steps done", atExit: "nothing is stored (serve stores its runs when all have ended)")
        let scenarios: [Int: Scenario]
        do {
            scenarios = try runner.load()
        } catch let error as SweepPointError {
            printError("error: \(error)")
            throw ExitCode(65)
        } catch let error as ScenarioError {
            printError("error: \(error)")
            throw ExitCode(65)
        }
        for (i, s) in scenarios where s.serving == nil {
            let at = sweep.points[i].isEmpty ? "" : " (point \(sweep.points[i].map(\.description).joined(separator: " ")))"
            printError("error: \(scenario)\(at): no serving section; epsim serve needs `serving:` (docs/scenario-format.md), epsim run simulates the workload section")
            throw ExitCode(65)
        }
        for i in scenarios.keys.sorted() {
            do {
                try Simulation.checkBudget(scenarios[i]!, options: SimulationOptions(timeline: .summary))
            } catch let error as SimulationError {
                printError("error: \(scenario): \(error.code.rawValue): \(error.message)")
                throw ExitCode(70)
            }
        }
        let store = noStore ? nil : try database.open(.create)
        let text = runner.scenarioText
        let progress = StepProgress(runs: scenarios.count, steps: scenarios.values.reduce(0) { $0 + ($1.serving?.steps ?? 0) })
        let points = sweep.points
        let outcome = runner.run(scenarios, jobs: min(jobs, scenarios.count)) { _, s in
            try ServingLoop(scenario: s).run(progress: { _, _ in progress.step() }, shouldStop: { runner.isStopped })
        }
        // Stored in point order (the ids follow the points, whatever finished first).
        var ids: [Int: Int64] = [:]
        if let store {
            for i in points.indices {
                guard let result = outcome.results[i] else { continue }
                var source = RunSource(scenarioPath: scenario, scenarioText: text)
                if !points[i].isEmpty { source.scenarioText += "\n# serve point: " + points[i].map(\.description).joined(separator: " ") + "\n" }
                ids[i] = try withStore { try store.saveServing(result, scenario: scenarios[i]!, source: source) }
            }
        }
        let signal = signals.cancel()
        progress.finish()
        for failure in outcome.failures { printError("error: \(scenario): \(failure.message)") }
        let rows = points.indices.compactMap { i in
            outcome.results[i].map { (label: Self.label(points[i], sweep: sweep), point: points[i].map(\.description).joined(separator: " "), result: $0, id: ids[i]) }
        }
        print(ServeReport.render(rows.map { ($0.label, $0.point, $0.result.summary, $0.id) }, format: format), terminator: "")
        if !ids.isEmpty, format == .table {
            print("stored as serving run\(rows.count > 1 ? "s" : "") \(rows.compactMap(\.id).map(String.init).joined(separator: ", ")) in \(database.resolvedPath) (tables serve_*)")
        }
        if let csvDir {
            do {
                try FileManager.default.createDirectory(atPath: csvDir, withIntermediateDirectories: true)
            } catch {
                printError("error: --csv-dir \(csvDir): cannot create the folder: \((error as NSError).localizedDescription)")
                throw ExitCode(73)
            }
            for (row, base) in zip(rows, Self.fileBases(rows.map(\.label))) {
                let path = csvDir + "/" + base
                try writeOutput(ServingExport.stepsCSV(row.result), to: path + "-steps.csv", what: "the steps CSV")
                try writeOutput(ServingExport.rankStepsCSV(row.result), to: path + "-rank-steps.csv", what: "the rank-steps CSV")
                try writeOutput(ServingExport.requestsCSV(row.result), to: path + "-requests.csv", what: "the requests CSV")
            }
            if format != .json { printError("wrote \(rows.count * 3) CSV files to \(csvDir)") }
        }
        if let plot, !rows.isEmpty {
            let svg =
                rows.count == 1
                ? ServingPlot.single(rows[0].result, title: rows[0].result.scenarioName)
                : ServingPlot.compare(rows.map { ($0.label, $0.result) }, title: rows[0].result.scenarioName)
            try writeOutput(svg, to: plot, what: "the plot")
            if format != .json { printError("wrote \(plot)") }
        }
        if outcome.stopped || rows.contains(where: { $0.result.stopped }) {
            printError("\(signal == SIGTERM ? "terminated (SIGTERM)" : "interrupted"): the steps simulated so far are reported\(store == nil ? "" : " and stored")")
            throw ExitCode(128 + (signal ?? SIGINT))
        }
        if !outcome.failures.isEmpty { throw ExitCode(70) }
    }

    /// A point's label for the table, the legends and the CSV file names: the overrides of
    /// the keys given several values (a key given one is the same for every run), keys
    /// shortened as far as they stay distinct (`policy=least-kv`); all overrides where no
    /// key has several values.
    static func label(_ point: [Override], sweep: Sweep) -> String {
        let keys = sweep.shortKeys
        let varied = Set(sweep.axes.filter { $0.values.count > 1 }.map(\.keyPath))
        let shown = varied.isEmpty ? point : point.filter { varied.contains($0.keyPath) }
        return shown.map { "\(keys[$0.keyPath] ?? $0.keyPath)=\($0.value)" }.joined(separator: " ")
    }

    static func fileSafe(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    /// One file name stem per run, distinct: the label made file-safe (`serve` without one),
    /// then `-2`, `-3`, ... where two labels give the same stem (`policy={weights: ...}`).
    static func fileBases(_ labels: [String]) -> [String] {
        var used = Set<String>()
        return labels.map { label in
            let stem = String((label.isEmpty ? "serve" : fileSafe(label)).prefix(200))
            var name = stem
            var n = 2
            while !used.insert(name).inserted {
                name = "\(stem)-\(n)"
                n += 1
            }
            return name
        }
    }
}

/// Steps done over all runs: a bar with ETA on a terminal, else a line on standard error
/// at every tenth of the steps (for logs of long runs).
final class StepProgress: @unchecked Sendable {
    let bar: ProgressBar
    let total: Int
    private let lock = NSLock()
    private var done = 0
    private let started = ContinuousClock.now

    init(runs: Int, steps: Int) {
        bar = ProgressBar(label: runs == 1 ? "serving" : "serving \(runs) runs")
        total = steps
    }

    func step() {
        let d = lock.withLock {
            done += 1
            return done
        }
        if bar.enabled {
            bar.update(done: d, total: total)
        } else if total >= 1000, d % (total / 10) == 0, d < total {
            let elapsed = (ContinuousClock.now - started).seconds
            printError(String(format: "[%d/%d steps] %.0f s elapsed, ETA %.0f s", d, total, elapsed, elapsed / Double(d) * Double(total - d)))
        }
    }

    func finish() { bar.finish() }
}

/// The comparison table (or JSON, CSV) of serving runs.
enum ServeReport {
    /// The run's shape: above the table when every run shares it, else columns.
    static let shape: [(name: String, value: @Sendable (ServingSummary) -> String?)] = [
        ("ranks", { String($0.ranks) }),
        ("moe_layers", { String($0.moeLayers) }),
        ("simulated_moe_layers", { String($0.simulatedMoELayers) }),
        ("counted_steps", { String($0.countedSteps) }),
    ]

    /// Each column's cell; nil for a figure over an empty set (blank in CSV, `-` in the table).
    static let columns: [(name: String, value: @Sendable (ServingSummary) -> String?)] = [
        ("policy", { $0.policy }),
        ("tokens_per_s_per_gpu", { f($0.tokensPerSecondPerGPU, 1) }),
        ("tpot_p50_us", { f($0.tpotP50Micros, 1) }),
        ("tpot_p99_us", { f($0.tpotP99Micros, 1) }),
        ("itl_p99_us", { f($0.itlP99Micros, 1) }),
        ("queue_p99_us", { f($0.queueP99Micros, 1) }),
        ("mean_step_us", { f($0.meanStepMicros, 1) }),
        ("balanced_step_us", { f($0.balancedStepMicros, 1) }),
        ("imbalance_share", { f($0.imbalanceShare, 4) }),
        ("mean_batch", { f($0.meanBatch, 1) }),
        ("batch_max_over_mean", { f($0.batchMaxOverMean, 3) }),
        ("kv_max_over_mean", { f($0.kvMaxOverMean, 3) }),
        ("requests_finished", { String($0.requestsFinished) }),
        ("requests_rejected", { String($0.requestsRejected) }),
        ("requests_waiting", { String($0.requestsWaiting) }),
        ("steps", { String($0.steps) }),
        ("wall_s", { String(format: "%.1f", $0.wallSeconds) }),
    ]

    static func f(_ x: Double?, _ digits: Int) -> String? { x.map { String(format: "%.\(digits)f", $0) } }

    /// `label`: the table's short point name; `point`: every override in full (JSON, CSV).
    static func render(_ rows: [(label: String, point: String, summary: ServingSummary, id: Int64?)], format: ServeCommand.ServeFormat) -> String {
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let list = rows.map { Labeled(point: $0.point, summary: $0.summary, serveID: $0.id) }
            return String(decoding: (try? encoder.encode(list)) ?? Data(), as: UTF8.self) + "\n"
        case .csv:
            let all = shape + columns
            var out = (["point"] + all.map(\.name)).joined(separator: ",") + "\n"
            for r in rows { out += ([r.point] + all.map { $0.value(r.summary) ?? "" }).map(csvField).joined(separator: ",") + "\n" }
            return out
        case .table:
            guard let first = rows.first?.summary else { return "" }
            // What every run shares goes above the table; what differs (--vary cluster.ranks)
            // is a column.
            let same = shape.filter { c in rows.allSatisfy { c.value($0.summary) == c.value(first) } }.map(\.name)
            let varying = shape.filter { !same.contains($0.name) }
            var facts: [String] = []
            if same.contains("ranks") { facts.append("\(first.ranks) ranks") }
            if same.contains("moe_layers") { facts.append("\(first.moeLayers) MoE layers") }
            if same.contains("simulated_moe_layers"), first.simulatedMoELayers < first.moeLayers || !same.contains("moe_layers") {
                facts.append("\(first.simulatedMoELayers) simulated per step, the rest extrapolated")
            }
            if same.contains("counted_steps") { facts.append("\(first.countedSteps) counted step\(first.countedSteps == 1 ? "" : "s") of \(first.steps)") }
            var out = "\(first.scenario)" + (facts.isEmpty ? "" : ": " + facts.joined(separator: ", ")) + "\n\n"
            let cells = varying + columns
            let header = (rows.count > 1 ? ["point"] : []) + cells.map(\.name)
            let body = rows.map { row in (rows.count > 1 ? [row.label] : []) + cells.map { c in c.value(row.summary) ?? "-" } }
            let widths = header.indices.map { i in max(header[i].count, body.map { $0[i].count }.max() ?? 0) }
            func line(_ cells: [String]) -> String {
                cells.indices.map { i in i == 0 ? cells[i].padding(toLength: widths[i], withPad: " ", startingAt: 0) : String(repeating: " ", count: widths[i] - cells[i].count) + cells[i] }
                    .joined(separator: "  ")
            }
            out += line(header) + "\n" + body.map(line).joined(separator: "\n") + "\n"
            return out
        }
    }

    static func csvField(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }

    struct Labeled: Encodable {
        var point: String
        var summary: ServingSummary
        var serveID: Int64?
        enum CodingKeys: String, CodingKey { case point, summary, serveID = "serve_id" }
    }
}
