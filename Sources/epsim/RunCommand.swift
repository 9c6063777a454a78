import ArgumentParser
import EPSim
import EPSimStore
import Foundation

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

extension TimelineDetail: ExpressibleByArgument {}

/// `epsim run FILE`: simulates a scenario, stores it, and prints per-rank latency and its
/// breakdown.
///
/// ```
/// $ epsim run Scenarios/batch-imbalance.yaml --schedule deepseek-decode --trace /tmp/t.json
/// ```
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Simulate a scenario, store the run, and print per-rank latencies.")

    @Argument(help: "Scenario YAML file.")
    var scenario: String

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    @Option(help: "Override the scenario's schedule with a preset: \(ScheduleSpec.presetNames.joined(separator: ", ")).")
    var schedule: String?

    @Option(help: "What to store: none (run row), summary (+ per-rank rows) or full (+ every kernel).")
    var timeline: TimelineDetail = .full

    @Flag(help: "Do not store the run.")
    var noStore = false

    @Option(help: "Write the timeline as CSV to this path.")
    var csv: String?

    @Option(help: "Write a Chrome trace-event JSON (Perfetto, chrome://tracing) to this path.")
    var trace: String?

    @OptionGroup var rowOptions: RankRowOptions

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var limits: BudgetOptions

    func validate() throws {
        try rowOptions.validate()
        try validateSchedule(schedule)
        try validateOutputPath(csv, option: "--csv")
        try validateOutputPath(trace, option: "--trace")
        try validateDistinctOutputs(
            [("--csv", csv), ("--trace", trace)],
            inputs: [("the scenario", scenario), ("the run database", noStore ? nil : database.resolvedPath)] + referencedFiles(scenario))
    }

    func run() throws {
        let text = try readScenarioText(scenario)
        let s = try loadScenario(scenario, text: text, schedule: schedule)
        if s.serving != nil && format == .table {
            printError("note: \(scenario) has a serving section, which `epsim serve` runs; `run` simulates its workload section")
        }
        if let note = s.measuredKernelNote { printError("note: \(note)") }
        // Opened (created, migrated, checked writable) before simulating: a bad --db costs no
        // simulation and loses no run.
        let store = noStore ? nil : try database.open(.create)
        let keepKernels = timeline == .full || csv != nil || trace != nil
        let bar = ProgressBar(label: "simulating \(s.name)")
        var options = limits.options(timeline: keepKernels ? .full : .summary)
        options.progress = bar.callback
        let simulated = Result { try simulate(s, path: scenario, options: options) }
        bar.finish()
        let (result, wall) = try simulated.get()
        var runID: Int64?
        if let store {
            runID = try withStore {
                try store.save(result, scenario: s, source: RunSource(scenarioPath: scenario, scenarioText: text), wallSeconds: wall, timeline: timeline)
            }
        }
        let summary = RunSummary(result: result)
        switch format {
        case .json:
            // The summary, and where the run was stored (so a script can export or plot it).
            print(try jsonString(StoredSummary(summary: summary, runID: runID, database: runID == nil ? nil : database.resolvedPath)))
        case .table:
            print(
                RunReport.table(summary: summary, scenario: s, wallSeconds: wall, rows: try rowOptions.rows(of: s.cluster.ranks, in: scenario)),
                terminator: "")
            if let runID { print("stored as run \(runID) in \(database.resolvedPath)") }
        }
        try writeExports(result.kernels, runID: runID, ranks: s.cluster.ranks, title: s.name, csv: csv, trace: trace, quiet: format == .json)
    }
}

/// `--all-ranks` / `--ranks SEL`: per-rank rows instead of the summary printed above
/// ``RunReport/summaryAbove`` ranks.
struct RankRowOptions: ParsableArguments {
    @Flag(help: "Print every rank's row (the default up to 16 ranks; a summary above).")
    var allRanks = false

    @Option(name: .customLong("ranks"), help: "Print these ranks' rows, e.g. 0-3,7.")
    var rankRows: String?

    func validate() throws {
        if allRanks && rankRows != nil { throw ValidationError("--all-ranks and --ranks: give one") }
        if let rankRows { _ = try RankSelection(parsing: rankRows) }
    }

    /// The rows asked for, nil for the default.
    func rows(of count: Int, in label: String) throws -> [Int]? {
        if allRanks { return Array(0..<count) }
        return try rankRows.map { try RankSelection(parsing: $0).ranks(of: count, in: label) }
    }
}

/// A run's summary with, when it was stored, its id and database (`run_id`, `database`).
struct StoredSummary: Encodable {
    var summary: RunSummary
    var runID: Int64?
    var database: String?

    enum Keys: String, CodingKey { case runID = "run_id", database }

    func encode(to encoder: any Encoder) throws {
        try summary.encode(to: encoder)
        var c = encoder.container(keyedBy: Keys.self)
        try c.encodeIfPresent(runID, forKey: .runID)
        try c.encodeIfPresent(database, forKey: .database)
    }
}

/// Runs a scenario, timing it, and maps a simulation failure to exit status 70 with a
/// message naming the file it came from.
func simulate(_ s: Scenario, path: String, options: SimulationOptions) throws -> (RunResult, Double) {
    let clock = ContinuousClock()
    let started = clock.now
    do {
        let result = try Simulation.run(s, options: options)
        return (result, (clock.now - started).seconds)
    } catch let error as SimulationError {
        printError("error: \(path): \(error.code.rawValue): \(error.message)")
        throw ExitCode(70)
    }
}

func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
