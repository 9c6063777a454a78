import ArgumentParser
import EPSim
import EPSimStore
import Foundation

/// `epsim sweep FILE --vary key=v1,v2 [--vary ...]`: runs the cross product in parallel,
/// stores every point, and prints one row per point.
///
/// ```
/// $ epsim sweep Scenarios/batch-imbalance-ep64.yaml --vary workload.tokens_per_rank=32,64,128 \
///       --vary schedule=none,deepseek-decode --jobs 2
/// ```
struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep", abstract: "Run a scenario over the cross product of varied keys, in parallel, storing every point.")

    @Argument(help: "Scenario YAML file.")
    var scenario: String

    @Option(name: .customLong("vary"), help: "key.path=value1,value2,... (repeatable; the last varies fastest).")
    var vary: [String] = []

    @Option(help: "Parallel workers (default: all cores).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Run only shard i of n (0-based, every n-th point starting at i), e.g. 0/4.")
    var shard: String?

    @Option(help: "What to store per point: none, summary or full.")
    var timeline: TimelineDetail = .summary

    @Flag(help: "Do not store the runs.")
    var noStore = false

    @Option(help: "Result format: table or csv.")
    var format: SweepFormat = .table

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var limits: BudgetOptions

    enum SweepFormat: String, ExpressibleByArgument { case table, csv }

    func validate() throws {
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        guard !vary.isEmpty else { throw ValidationError("give at least one --vary key.path=value1,value2") }
    }

    func run() throws {
        let sweep: Sweep
        var indices: [Int]
        do {
            sweep = try Sweep(varying: vary)
            let all = sweep.points.count
            indices = Array(0..<all)
            if let shard {
                let (i, n) = try Sweep.parseShard(shard)
                indices = Sweep.shard(all, index: i, of: n)
            }
        } catch let error as SweepError {
            throw ValidationError(error.description)
        }
        let runner = SweepRunner(scenarioPath: scenario, points: sweep.points, indices: indices)
        let scenarios: [Int: Scenario]
        do {
            scenarios = try runner.load()
        } catch {
            printError("error: \(error)")
            throw ExitCode(error is ScenarioError ? 65 : 70)
        }
        let store = noStore ? nil : try database.open(.create)
        let text = (try? String(contentsOfFile: scenario, encoding: .utf8)) ?? ""
        let progress = Progress(total: indices.count)
        let interrupt = Self.catchInterrupt(runner)
        let started = ContinuousClock.now
        let options = limits.options(timeline: timeline == .full ? .full : .summary)
        let timeline = self.timeline
        let path = scenario
        let points = sweep.points
        let outcome = runner.run(
            scenarios, jobs: jobs,
            progress: { done, label in progress.update(done: done, elapsed: (ContinuousClock.now - started).seconds, label: label) }
        ) { i, s in
            let point = points[i]
            let clock = ContinuousClock.now
            let result = try Simulation.run(s, options: options)
            let wall = (ContinuousClock.now - clock).seconds
            var source = RunSource(scenarioPath: path, scenarioText: text)
            source.scenarioText += "\n# sweep point: " + point.map(\.description).joined(separator: " ") + "\n"
            let id = try store?.save(result, scenario: s, source: source, wallSeconds: wall, timeline: timeline)
            return SweepReport.Row(point: point, summary: RunSummary(result: result), runID: id)
        }
        interrupt.cancel()
        progress.finish()
        let rows = indices.compactMap { i in outcome.results[i].map { (i, $0) } }
        print(SweepReport.render(rows, axes: sweep.axes, format: format), terminator: "")
        for failure in outcome.failures { printError("error: \(failure.message)") }
        if outcome.stopped {
            printError("interrupted: \(rows.count) of \(indices.count) points completed\(store == nil ? "" : " and stored")")
            throw ExitCode(130)
        }
        if !outcome.failures.isEmpty { throw ExitCode(70) }
    }

    /// Ctrl-C stops handing out points; those running finish and are stored.
    static func catchInterrupt(_ runner: SweepRunner) -> DispatchSourceSignal {
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            runner.stop()
            FileHandle.standardError.write(Data("\ninterrupting: finishing the points in flight...\n".utf8))
        }
        source.resume()
        return source
    }
}

/// A progress bar with ETA on a terminal, plain lines otherwise (both on standard error).
final class Progress: @unchecked Sendable {
    let total: Int
    let terminal = isatty(STDERR_FILENO) != 0
    private let lock = NSLock()

    init(total: Int) { self.total = total }

    func update(done: Int, elapsed: Double, label: String) {
        lock.withLock {
            let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
            if terminal {
                let width = 30
                let filled = total > 0 ? width * done / total : width
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                FileHandle.standardError.write(Data(String(format: "\r[%@] %d/%d  %.1f s elapsed, ETA %.1f s ", bar, done, total, elapsed, eta).utf8))
            } else {
                FileHandle.standardError.write(Data(String(format: "[%d/%d] %@ (%.1f s elapsed, ETA %.1f s)\n", done, total, label, elapsed, eta).utf8))
            }
        }
    }

    func finish() {
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

enum SweepReport {
    /// One completed point: its overrides, figures and stored run id.
    struct Row: Sendable {
        var point: [Override]
        var summary: RunSummary
        var runID: Int64?
    }

    static func render(_ rows: [(Int, Row)], axes: [Sweep.Axis], format: SweepCommand.SweepFormat) -> String {
        let metrics = RankMetric.shown(in: .sweep)
        let header = ["point"] + axes.map(\.keyPath) + ["step_latency_us", "rank_latency_mean_us"] + metrics.map(\.name) + ["run_id"]
        let body = rows.map { index, row in
            [String(index)] + row.point.map(\.value)
                + ([row.summary.step_latency_us, row.summary.rank_latency_mean_us] + metrics.map { row.summary.rank_mean[$0] }).map(RunReport.us)
                + [row.runID.map(String.init) ?? ""]
        }
        switch format {
        case .table: return TextTable.render(header: header, rows: body)
        case .csv: return ([header] + body).map { $0.map(ComparisonReport.csvField).joined(separator: ",") }.joined(separator: "\n") + "\n"
        }
    }
}

/// `epsim db merge TARGET SOURCE...`: combines databases (e.g. of sweep shards).
struct DatabaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "db", abstract: "Database maintenance.", subcommands: [Merge.self])

    /// Every source is checked before the target is touched, all are copied in one
    /// transaction, and a run already in the target is skipped (``RunStore/merge(into:from:)``).
    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy every run of the source databases into the target (new ids); runs already there are skipped.")
        @Argument(help: "Target database (created if missing).") var target: String
        @Argument(help: "Source databases.") var sources: [String]

        func validate() throws {
            if sources.isEmpty { throw ValidationError("give at least one source database") }
        }

        func run() throws {
            let outcomes = try withStore { try RunStore.merge(into: target, from: sources) }
            for o in outcomes {
                var line = "merged \(o.newIDs.count) runs from \(o.source)"
                if let first = o.newIDs.first, let last = o.newIDs.last { line += " as runs \(first)...\(last)" }
                if o.skipped > 0 { line += "; skipped \(o.skipped) already in \(target)" }
                print(line)
            }
        }
    }
}
