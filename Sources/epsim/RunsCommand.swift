import ArgumentParser
import EPSim
import EPSimStore
import Foundation

/// `epsim runs list|show|delete`: the stored runs.
struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs", abstract: "List, show or delete stored runs.", subcommands: [List.self, Show.self, Delete.self])

    /// `epsim runs list [--scenario NAME]`: newest first.
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List stored runs, newest first.")
        @Option(help: "Only runs of this scenario name.") var scenario: String?
        @Option(help: "At most this many runs.") var limit: Int?
        @Option(help: "Output format: table, json or csv.") var format: ListFormat = .table
        @OptionGroup var database: DatabaseOptions

        enum ListFormat: String, ExpressibleByArgument, CaseIterable { case table, json, csv }

        /// One run as JSON: the table's columns, the step latency in µs.
        struct Entry: Encodable {
            var id: Int64
            var created_at: String
            var scenario: String
            var schedule: String
            var ranks: Int
            var steps: Int
            var step_latency_us: Double
            var timeline: String
        }

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit \(limit): expected a number of runs, 1 or more") }
        }

        func run() throws {
            let store = try database.open(.read)
            let runs = try withStore { try store.list(scenario: scenario, limit: limit) }
            let header = ["id", "created_at", "scenario", "schedule", "ranks", "steps", "step_latency_us", "timeline"]
            let rows = runs.map {
                [
                    String($0.id), $0.createdAt, $0.scenarioName, $0.schedule, String($0.ranks), String($0.steps),
                    RunReport.us($0.stepLatencyMicros), $0.timeline,
                ]
            }
            switch format {
            case .table:
                print(TextTable.render(header: header, rows: rows), terminator: "")
            case .csv:
                print(([header] + rows).map { $0.map(ComparisonReport.csvField).joined(separator: ",") }.joined(separator: "\n"))
            case .json:
                print(
                    try jsonString(
                        runs.map {
                            Entry(
                                id: $0.id, created_at: $0.createdAt, scenario: $0.scenarioName, schedule: $0.schedule, ranks: $0.ranks,
                                steps: $0.steps, step_latency_us: $0.stepLatencyMicros, timeline: $0.timeline)
                        }))
            }
        }
    }

    /// `epsim runs show ID`: the run's figures and where it came from.
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one stored run.")
        @Argument(help: "Run id.") var id: Int64
        @Option(help: "Output format: table or json.") var format: OutputFormat = .table
        @OptionGroup var rowOptions: RankRowOptions
        @OptionGroup var database: DatabaseOptions

        func validate() throws { try rowOptions.validate() }

        func run() throws {
            let store = try database.open(.read)
            let run = try withStore { try store.run(id) }
            // A rank the run does not have is refused before anything is printed.
            let rows = try rowOptions.rows(of: run.listing.ranks, in: "run \(id)")
            switch format {
            case .json:
                print(try jsonString(run.summary))
            case .table:
                print("run \(id): scenario \(run.listing.scenarioName) (\(run.scenarioPath), hash \(run.scenarioHash)), schedule \(run.listing.schedule)")
                print(
                    "created \(run.listing.createdAt) by epsim \(run.toolVersion), seed \(run.seed), simulated in \(String(format: "%.3f", run.wallSeconds)) s, timeline \(run.listing.timeline) (\(run.storedKernels) kernels stored)"
                )
                print(RunReport.rankTable(run.summary, rows: rows), terminator: "")
                print("step latency: \(RunReport.us(run.summary.step_latency_us)) us (max over ranks; slowest rank \(run.summary.slowest_rank))")
                print(RunReport.culpritLine(run.summary), terminator: "")
            }
        }
    }

    /// `epsim runs delete ID`.
    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete one stored run.")
        @Argument(help: "Run id.") var id: Int64
        @OptionGroup var database: DatabaseOptions

        func run() throws {
            let store = try database.open(.write)
            try withStore { try store.delete(id) }
            print("deleted run \(id)")
        }
    }
}

/// `epsim export ID --csv PATH --trace PATH`: a stored run's timeline as files.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Export a stored run's timeline as CSV and/or a Chrome trace (Perfetto).")
    @Argument(help: "Run id.") var id: Int64
    @Option(help: "Write the timeline as CSV to this path.") var csv: String?
    @Option(help: "Write a Chrome trace-event JSON to this path.") var trace: String?
    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        if csv == nil && trace == nil { throw ValidationError("give --csv PATH and/or --trace PATH") }
        try validateOutputPath(csv, option: "--csv")
        try validateOutputPath(trace, option: "--trace")
        try validateDistinctOutputs([("--csv", csv), ("--trace", trace)], inputs: [("the run database", database.resolvedPath)])
    }

    func run() throws {
        let store = try database.open(.read)
        let (run, kernels) = try withStore { (try store.run(id), try store.kernels(id)) }
        if kernels.isEmpty {
            printError("error: run \(id) was stored with timeline \(run.listing.timeline): it has no kernels to export; run it again with --timeline full")
            throw ExitCode(65)
        }
        try writeExports(kernels, runID: id, ranks: run.listing.ranks, title: run.listing.scenarioName, csv: csv, trace: trace)
    }
}
