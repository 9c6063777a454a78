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
///
/// Every point is read before any runs: an invalid point refuses the whole sweep (exit 65)
/// unless `--skip-invalid`, which runs the valid points and lists the others on standard
/// error (exit 0 when every valid point ran, 65 when no point is valid). SIGINT and SIGTERM
/// stop it cleanly (``StopSignals``).
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

    @Flag(help: "Run the valid points and list the invalid ones on standard error, instead of refusing the whole sweep.")
    var skipInvalid = false

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
        do {
            _ = try Sweep(varying: vary)
            if let shard { _ = try Sweep.parseShard(shard) }
        } catch let error as SweepError {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        // Checked in validate().
        let sweep = try Sweep(varying: vary)
        var indices = Array(0..<sweep.points.count)
        if let shard {
            let (i, n) = try Sweep.parseShard(shard)
            indices = Sweep.shard(indices.count, index: i, of: n)
        }
        let runner = SweepRunner(scenarioPath: PackagePaths.resolve(scenario), points: sweep.points, indices: indices)
        // From here on SIGINT and SIGTERM stop the sweep cleanly (a signal during the load
        // makes it run no point).
        let signals = StopSignals(runner)
        let loaded: [Int: Scenario]
        let unreadable: [SweepPointError]
        do {
            if skipInvalid {
                (loaded, unreadable) = try runner.loadValid()
            } else {
                (loaded, unreadable) = (try runner.load(), [])
            }
        } catch let error as SweepPointError {
            printError("error: \(error)")
            printError("(every point is read before any runs; --skip-invalid runs the valid points and lists the others)")
            throw ExitCode(65)
        } catch let error as ScenarioError {
            printError("error: \(error)")
            throw ExitCode(65)
        }
        for error in unreadable { printError("skipped: \(error)") }
        // What run would refuse before simulating (the memory budget, the time bound) is
        // checked for every point before any runs, as validate does for a file.
        let options = limits.options(timeline: timeline == .full ? .full : .summary)
        var scenarios = loaded
        var invalid = unreadable.map(\.index)
        for i in scenarios.keys.sorted() {
            do {
                try Simulation.checkBudget(scenarios[i]!, options: options)
            } catch let error as SimulationError {
                let what = "\(scenario): point \(i) (\(sweep.points[i].map(\.description).joined(separator: " "))): \(error.code.rawValue): \(error.message)"
                guard skipInvalid else {
                    printError("error: \(what)")
                    printError("(every point is checked before any runs; --skip-invalid runs the others and lists this one)")
                    throw ExitCode(70)
                }
                printError("skipped: \(what)")
                scenarios[i] = nil
                invalid.append(i)
            }
        }
        invalid.sort()
        if scenarios.isEmpty && !invalid.isEmpty {
            printError("error: no valid point among the \(indices.count) points of this sweep\(shard == nil ? "" : " shard")")
            throw ExitCode(65)
        }
        let store = noStore ? nil : try database.open(.create)
        let text = runner.scenarioText
        let progress = Progress(total: scenarios.count)
        let started = ContinuousClock.now
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
        let signal = signals.cancel()
        progress.finish()
        let rows = indices.compactMap { i in outcome.results[i].map { (i, $0) } }
        print(SweepReport.render(rows, axes: sweep.axes, format: format), terminator: "")
        for failure in outcome.failures { printError("error: \(failure.message)") }
        if !invalid.isEmpty {
            printError(
                "skipped \(invalid.count) invalid point\(invalid.count == 1 ? "" : "s") of \(indices.count): \(invalid.map(String.init).joined(separator: ", "))"
            )
        }
        if outcome.stopped {
            let name = signal == SIGTERM ? "terminated (SIGTERM)" : "interrupted"
            printError("\(name): \(rows.count) of \(scenarios.count) points completed\(store == nil ? "" : " and stored")")
            throw ExitCode(128 + (signal ?? SIGINT))
        }
        if !outcome.failures.isEmpty { throw ExitCode(70) }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (what Slurm's `scancel`, a job's time limit and Kubernetes
/// send) stop a sweep cleanly: no more points are handed out, those in flight finish and
/// are stored, the completed rows are printed, and the exit status is 128 + the signal
/// (130, 143), as a shell reports a process the signal ended. A second signal at least a
/// second after the first exits at once with that status, leaving the points stored so far
/// (one sooner is the same stop delivered twice: GNU `timeout` signals the process and then
/// its group).
final class StopSignals: @unchecked Sendable {
    private let lock = NSLock()
    private var sources: [DispatchSourceSignal] = []
    private var first: Int32?
    private var firstAt = ContinuousClock.now

    /// - Parameters:
    ///   - inFlight: what the first signal lets finish, as the message names it.
    ///   - atExit: what a second signal leaves, as the message names it.
    init(_ runner: SweepRunner, inFlight: String = "the points in flight", atExit: String = "the points completed so far are stored") {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                let (repeated, soon) = lock.withLock {
                    defer {
                        if first == nil { (first, firstAt) = (number, ContinuousClock.now) }
                    }
                    return (first != nil, ContinuousClock.now - firstAt < .seconds(1))
                }
                if repeated && soon { return }
                if repeated {
                    FileHandle.standardError.write(Data("\nsecond signal: exiting now; \(atExit)\n".utf8))
                    _exit(128 + (lock.withLock { first } ?? number))
                }
                runner.stop()
                let name = number == SIGTERM ? "SIGTERM" : "interrupt"
                FileHandle.standardError.write(Data("\n\(name): finishing \(inFlight) (a second signal exits at once)...\n".utf8))
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Stops listening; the signal that stopped the sweep, if one did.
    func cancel() -> Int32? {
        for source in sources { source.cancel() }
        return lock.withLock { first }
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
        // Multi-token prediction: accepted tokens per second per GPU, when any point has it
        // (empty where a point has no draft tokens).
        let accepted = rows.contains { $0.1.summary.accepted_tokens_per_s_per_gpu != nil }
        let header =
            ["point"] + axes.map(\.keyPath) + ["step_latency_us", "rank_latency_mean_us"] + (accepted ? ["accepted_tokens_per_s_per_gpu"] : [])
            + metrics.map(\.name) + ["run_id"]
        let body = rows.map { index, row in
            [String(index)] + row.point.map(\.value)
                + [row.summary.step_latency_us, row.summary.rank_latency_mean_us].map(RunReport.us)
                + (accepted ? [row.summary.accepted_tokens_per_s_per_gpu.map { String(format: "%.1f", $0) } ?? ""] : [])
                + metrics.map { row.summary.rank_mean[$0] }.map(RunReport.us)
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
            abstract: "Copy every run and serving run of the source databases into the target (new ids); runs already there are skipped.")
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
                if !o.newServingIDs.isEmpty || o.skippedServing > 0 {
                    let n = o.newServingIDs.count
                    line += "; \(n) serving run\(n == 1 ? "" : "s")"
                    if let first = o.newServingIDs.first, let last = o.newServingIDs.last { line += first == last ? " as serving run \(first)" : " as \(first)...\(last)" }
                    if o.skippedServing > 0 { line += ", skipped \(o.skippedServing) already there" }
                }
                print(line)
            }
        }
    }
}
