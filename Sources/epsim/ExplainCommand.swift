import ArgumentParser
import EPSim
import EPSimStore
import EventCore
import Foundation

/// A run named on the command line: a stored run id, or a scenario file run on the spot
/// (with its full timeline). `check(ranks, steps, label)` sees the run's size before its
/// kernels are read or simulated, so that a rank or step it does not have is refused first.
func resolveRun(
    _ item: String, database: DatabaseOptions, schedule: String? = nil, check: (_ ranks: Int, _ steps: Int, _ label: String) throws -> Void = { _, _, _ in }
) throws -> (result: RunResult, label: String) {
    if let id = Int64(item), !FileManager.default.fileExists(atPath: item) {
        let store = try database.open(.read)
        let run = try withStore { try store.run(id) }
        try check(run.listing.ranks, run.listing.steps, "run \(id)")
        let kernels = try withStore { try store.kernels(id) }
        guard !kernels.isEmpty else {
            printError("error: run \(id) was stored with timeline \(run.listing.timeline): it has no kernels; run it again with --timeline full")
            throw ExitCode(65)
        }
        guard run.summary.per_rank.count == run.listing.ranks * run.listing.steps else {
            printError("error: run \(id) has no per-rank rows")
            throw ExitCode(65)
        }
        return (run.result(kernels: kernels), "run \(id): \(run.listing.scenarioName) [\(run.listing.schedule)]")
    }
    let s = try loadScenario(item, schedule: schedule)
    try check(s.cluster.ranks, s.steps, item)
    let (result, _) = try simulate(s, path: item, options: SimulationOptions(timeline: .full))
    return (result, "\(s.name) [\(s.schedule.name)]")
}

/// A run's per-rank summary for `plot --compare`: a stored run's as stored (its kernels are
/// not needed, so a run kept with `--timeline summary`, as `sweep` keeps them, will do), or a
/// scenario file's, run on the spot without keeping its kernels.
func resolveSummary(_ item: String, database: DatabaseOptions) throws -> (label: String, summary: RunSummary) {
    if let id = Int64(item), !FileManager.default.fileExists(atPath: item) {
        let store = try database.open(.read)
        let run = try withStore { try store.run(id) }
        guard run.summary.per_rank.count == run.listing.ranks * run.listing.steps, !run.summary.per_rank.isEmpty else {
            printError("error: run \(id) was stored with timeline \(run.listing.timeline): it has no per-rank rows; run it again with --timeline summary or full")
            throw ExitCode(65)
        }
        return ("run \(id): \(run.listing.scenarioName) [\(run.listing.schedule)]", run.summary)
    }
    let s = try loadScenario(item, schedule: nil)
    let (result, _) = try simulate(s, path: item, options: SimulationOptions(timeline: .summary))
    return ("\(s.name) [\(s.schedule.name)]", RunSummary(result: result))
}

/// `epsim explain RUN|FILE`: the critical path of the slowest step and who waited for whom.
///
/// ```
/// $ epsim explain Scenarios/batch-imbalance.yaml
/// ```
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain", abstract: "Print the critical path of a step and, per rank, its own work and the wait others caused it.")

    @Argument(help: "A stored run id (kept with --timeline full) or a scenario file.")
    var target: String

    @Option(help: "Step to explain (default: the slowest).")
    var step: Int?

    @Option(help: "Override a scenario file's schedule with a preset.")
    var schedule: String?

    @Flag(help: "Print every link of the critical path and every rank (default: a summary when there are more than 40 links or 16 ranks).")
    var full = false

    @Option(help: "Only the critical path's links in these layers, e.g. 3-5 or 4.")
    var layers: String?

    @Option(help: "Only the critical path's links overlapping this time window in simulated us, e.g. 1000-2500.")
    var window: String?

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        try validateStep(step)
        try validateSchedule(schedule)
        _ = try parseLayerRange(layers)
        _ = try parseTimeWindow(window)
    }

    func run() throws {
        let (result, label) = try resolveRun(target, database: database, schedule: schedule) { _, steps, label in
            try checkStep(step, steps: steps, in: label)
        }
        guard let path = CriticalPath(result, step: step) else {
            printError("error: no step \(step ?? 0) in \(label)")
            throw ExitCode(64)
        }
        let layerRange = try parseLayerRange(layers)
        let timeWindow = try parseTimeWindow(window)
        if let layerRange, !path.links.contains(where: { layerRange.contains(Int($0.kernel.layer)) }) {
            let layers = Set(path.links.map { Int($0.kernel.layer) })
            throw usageError(
                "--layers \(self.layers ?? ""): the critical path of step \(path.step) has no link in those layers (it passes layers \(layers.min() ?? 0)-\(layers.max() ?? 0))")
        }
        if let timeWindow, !path.links.contains(where: { $0.end.micros >= timeWindow.lowerBound && $0.start.micros <= timeWindow.upperBound }) {
            throw usageError(
                "--window \(window ?? ""): step \(path.step) runs from \(ExplainReport.us(path.start)) to \(ExplainReport.us(path.end)) us (absolute simulated time); no link of its critical path is in the window")
        }
        print(ExplainReport.render(result, path: path, label: label, full: full, layers: layerRange, window: timeWindow), terminator: "")
    }
}

enum ExplainReport {
    static func us(_ t: SimTime) -> String { String(format: "%.3f", t.micros) }

    /// Above this many links the path is summarised by kind unless `full`.
    static let linksInFull = 40

    /// What a link is, without where: its kernel kind and part, or its message kind.
    static func category(_ l: CriticalPath.Link) -> String {
        let k = l.kernel
        switch l.kind {
        case .kernel: return "\(k.kind)"
        case .send: return "\(k.kind), sending part"
        case .message: return "message (\(k.kind.isDispatchSide ? "dispatch" : "combine"))"
        case .receive: return "\(k.kind), after its last arrival"
        case .launch: return "launch gap"
        }
    }

    /// The path by kind of link: how many, how long in all and its share, the ranks and
    /// layers it passes through.
    static func pathSummary(_ links: [CriticalPath.Link], length: SimTime) -> String {
        var order: [String] = []
        var groups: [String: (count: Int, total: SimTime, ranks: Set<Int>, layers: Set<Int>)] = [:]
        for l in links {
            let c = category(l)
            if groups[c] == nil { order.append(c) }
            groups[c, default: (0, .zero, [], [])].count += 1
            groups[c]!.total += l.duration
            groups[c]!.ranks.insert(Int(l.rank))
            groups[c]!.layers.insert(Int(l.kernel.layer))
        }
        order.sort { groups[$0]!.total > groups[$1]!.total }
        func span(_ xs: Set<Int>) -> String {
            let s = xs.sorted()
            return s.count == 1 ? "only \(s[0])" : "\(s.count) of \(s.first!)-\(s.last!)"
        }
        let total = max(length.micros, 1e-12)
        return TextTable.render(
            header: ["link", "count", "total_us", "share", "ranks", "layers"],
            rows: order.map { c in
                let g = groups[c]!
                return [c, String(g.count), us(g.total), String(format: "%.1f%%", 100 * g.total.micros / total), span(g.ranks), span(g.layers)]
            })
    }

    static func render(
        _ result: RunResult, path: CriticalPath, label: String, full: Bool = false, layers: ClosedRange<Int>? = nil, window: ClosedRange<Double>? = nil
    ) -> String {
        var out = "\(label), step \(path.step): step latency \(us(path.end - path.start)) us, set by rank \(path.rank)\n\n"
        var links = path.links
        var scope = ""
        if let layers {
            links = links.filter { layers.contains(Int($0.kernel.layer)) }
            scope += ", layers \(layers.lowerBound)-\(layers.upperBound)"
        }
        if let window {
            links = links.filter { $0.end.micros >= window.lowerBound && $0.start.micros <= window.upperBound }
            scope += ", \(String(format: "%g", window.lowerBound))-\(String(format: "%g", window.upperBound)) us"
        }
        let length = links.reduce(SimTime.zero) { $0 + $1.duration }
        if scope.isEmpty {
            out += "critical path (\(path.links.count) links, adding up to \(us(path.length)) us)"
        } else {
            out += "critical path\(scope): \(links.count) of its \(path.links.count) links, \(us(length)) of \(us(path.length)) us"
        }
        if !full && links.count > linksInFull {
            out += ", by kind of link (--full for every link):\n" + pathSummary(links, length: length)
        } else {
            out += ":\n" + linkTable(links)
        }
        let accounts = RankAccount.accounts(result, step: path.step)
        var caused = [SimTime](repeating: .zero, count: result.ranks)
        for a in accounts { for (b, w) in a.waitByRank where b != a.rank { caused[b] += w } }
        let network = accounts.reduce(SimTime.zero) { $0 + $1.waitByNetwork }
        out += "\nper rank (step \(path.step)):\n"
        var shown = accounts
        if !full && accounts.count > RunReport.summaryAbove {
            shown = Array(accounts.sorted { $0.totalWait > $1.totalWait || ($0.totalWait == $1.totalWait && $0.rank < $1.rank) }.prefix(5))
            out += "(the 5 that waited longest of \(accounts.count); --full for every rank)\n"
        }
        out += TextTable.render(
            header: ["rank", "e2e_us", "own_work_us", "wait_us", "by_network_us", "wait caused by other ranks"],
            rows: shown.map { a in
                let causes = a.waitByRank.filter { $0.value > .zero }.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
                    .prefix(3).map { "rank \($0.key): \(us($0.value))" }.joined(separator: ", ")
                return [String(a.rank), us(a.latency), us(a.ownWork), us(a.totalWait), us(a.waitByNetwork), causes.isEmpty ? "-" : causes]
            })
        out += "\n"
        if let culprit = Culprit.find(blockedWaitMicros: result.blockedWait.map(\.micros)) { out += culprit.sentence + "\n" }
        if let worst = caused.indices.max(by: { caused[$0] < caused[$1] || (caused[$0] == caused[$1] && $0 > $1) }), caused[worst] > .zero {
            out += "of the wait in this step, rank \(worst) caused the most by starting late or sending more (\(us(caused[worst])) us);"
            out += " the network added \(us(network)) us\n"
        } else {
            out += "no rank made another wait by starting late or sending more; the network added \(us(network)) us of wait\n"
        }
        return out
    }

    /// Every link of the path, in order.
    static func linkTable(_ links: [CriticalPath.Link]) -> String {
        let rows = links.map { l -> [String] in
            let k = l.kernel
            let what: String
            switch l.kind {
            case .kernel: what = "rank \(l.rank) \(k.kind)(\(k.microBatch)) layer \(k.layer)"
            case .send: what = "rank \(l.rank) \(k.kind)(\(k.microBatch)) layer \(k.layer), sending part"
            case .message:
                what = "message rank \(l.fromRank) -> rank \(l.rank) (\(k.kind.isDispatchSide ? "dispatch" : "combine"), layer \(k.layer), \(k.microBatch))"
            case .receive: what = "rank \(l.rank) \(k.kind)(\(k.microBatch)) layer \(k.layer), after its last arrival"
            case .launch: what = "rank \(l.rank) launch gap before \(k.kind)(\(k.microBatch)) layer \(k.layer)"
            }
            return [us(l.start), us(l.end), us(l.duration), what]
        }
        return TextTable.render(header: ["start_us", "end_us", "duration_us", "link"], rows: rows)
    }
}

/// `epsim plot`: SVG pictures of a run's timeline, of runs side by side, or of a sweep's CSV.
///
/// ```
/// $ epsim plot Scenarios/batch-imbalance.yaml --svg timeline.svg
/// $ epsim plot --compare 1 2 3 --svg compare.svg
/// $ epsim plot --csv sweep.csv --x workload.tokens_per_rank --y step_latency_us --series schedule --svg sweep.svg
/// ```
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plot", abstract: "Draw a run's timeline, runs side by side, or a sweep, as SVG.")

    @Argument(help: "Run ids and/or scenario files.")
    var items: [String] = []

    @Option(help: "Write the SVG here.")
    var svg: String

    @Flag(help: "Grouped bars of the step latency of every item, broken down by kind.")
    var compare = false

    @Option(help: "Ranks to draw, e.g. 0-3,7 (default: all up to 16 ranks; above, a band for all ranks and the 3 slowest).")
    var ranks: String?

    @Option(help: "Layers to draw, e.g. 3-5 or 4 (default: all).")
    var layers: String?

    @Option(help: "Time window to draw in simulated us, e.g. 1000-2500 (default: the step).")
    var window: String?

    @Option(help: "Step to draw (default: the slowest).")
    var step: Int?

    @Option(help: "Draw a line chart from this CSV (e.g. `epsim sweep --format csv`).")
    var csv: String?
    @Option(help: "The CSV column for x.") var x: String?
    @Option(help: "The CSV column for y.") var y: String?
    @Option(help: "The CSV column whose values make separate lines.") var series: String?
    @Option(help: "Title of the picture.") var title: String?

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        try validateOutputPath(svg, option: "--svg")
        try validateDistinctOutputs(
            [("--svg", svg)],
            inputs: [("the run database", database.resolvedPath), ("the --csv file", csv)] + items.map { ("an input", $0) }
                + items.flatMap(referencedFiles))
        try validateStep(step)
        if let ranks { _ = try RankSelection(parsing: ranks) }
        _ = try layerRange()
        _ = try timeWindow()
        let timelineOnly = [("--ranks", ranks != nil), ("--step", step != nil), ("--layers", layers != nil), ("--window", window != nil)]
            .filter(\.1).map(\.0)
        let csvOnly = [("--x", x != nil), ("--y", y != nil), ("--series", series != nil)].filter(\.1).map(\.0)
        if csv != nil {
            guard x != nil, y != nil else { throw ValidationError("--csv needs --x COLUMN and --y COLUMN") }
            guard items.isEmpty else { throw ValidationError("--csv draws the CSV alone; give no run ids or scenario files with it") }
            guard !compare else { throw ValidationError("--csv and --compare draw different pictures; give one of them") }
            if let option = timelineOnly.first { throw ValidationError("\(option) selects from a run's timeline; it does not apply to --csv") }
            return
        }
        if let option = csvOnly.first { throw ValidationError("\(option) names a column of --csv; give --csv SWEEP.csv with it") }
        if compare {
            guard !items.isEmpty else { throw ValidationError("--compare needs run ids or scenario files") }
            if let option = timelineOnly.first { throw ValidationError("\(option) selects from a run's timeline; --compare draws whole runs") }
        } else {
            guard items.count == 1 else {
                throw ValidationError("give one run id or scenario file (or --compare for several), found \(items.count)")
            }
        }
    }

    func layerRange() throws -> ClosedRange<Int>? { try parseLayerRange(layers) }
    func timeWindow() throws -> ClosedRange<Double>? { try parseTimeWindow(window) }

    func run() throws {
        let document: String
        if let csv, let x, let y {
            do {
                let text = try Scenario.readText(path: csv, expected: "a CSV file")
                document = try Plot.lines(csv: text, x: x, y: y, series: series, title: title ?? "\(y) against \(x)")
            } catch let e as ScenarioError {
                printError("error: \(e)")
                throw ExitCode(65)
            } catch let e as PlotError {
                printError("error: \(csv): \(e)")
                throw ExitCode(65)
            }
        } else if compare {
            var columns: [(label: String, summary: RunSummary)] = []
            for item in items { columns.append(try resolveSummary(item, database: database)) }
            document = Plot.compare(columns, title: title ?? "step latency by kind")
        } else {
            let selection = try ranks.map(RankSelection.init(parsing:))
            var chosen: [Int]?
            let (result, label) = try resolveRun(items[0], database: database) { count, steps, label in
                chosen = try selection?.ranks(of: count, in: label)
                try checkStep(step, steps: steps, in: label)
            }
            // An empty selection is an error that says what there is, not an empty picture.
            let shownStep = CriticalPath(result, step: step)?.step ?? (step ?? 0)
            let stepKernels = result.kernels.filter { $0.step == Int32(shownStep) }
            if let range = try layerRange(), !stepKernels.contains(where: { range.contains(Int($0.layer)) }) {
                let all = stepKernels.map { Int($0.layer) }
                throw usageError("--layers \(layers ?? ""): step \(shownStep) has layers \(all.min() ?? 0)-\(all.max() ?? 0)")
            }
            if let w = try timeWindow(), !stepKernels.contains(where: { $0.end.micros >= w.lowerBound && $0.start.micros <= w.upperBound }) {
                let first = stepKernels.map(\.start.micros).min() ?? 0, last = stepKernels.map(\.end.micros).max() ?? 0
                throw usageError(
                    "--window \(window ?? ""): step \(shownStep) runs from \(String(format: "%.3f", first)) to \(String(format: "%.3f", last)) us (absolute simulated time); nothing to draw in the window")
            }
            document = Plot.timeline(result, step: step, ranks: chosen, layers: try layerRange(), window: try timeWindow(), title: title ?? label)
        }
        try writeOutput(document, to: svg, what: "the SVG")
        print("wrote \(svg)")
    }
}

/// `--layers A-B` or `--layers A`: a usage error for anything else.
func parseLayerRange(_ layers: String?) throws -> ClosedRange<Int>? {
    guard let layers else { return nil }
    let ends = layers.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard (1...2).contains(ends.count), let low = ends.first ?? nil, let high = ends.last ?? nil, low >= 0, low <= high, high < 1 << 20 else {
        throw ValidationError("--layers \"\(layers)\": expected a layer or a range of layers such as 3-5")
    }
    return low...high
}

/// `--window T0-T1` in µs of simulated time: a usage error for anything else.
func parseTimeWindow(_ window: String?) throws -> ClosedRange<Double>? {
    guard let window else { return nil }
    let ends = window.split(separator: "-", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard ends.count == 2, let low = ends[0] ?? nil, let high = ends[1] ?? nil, low.isFinite, high.isFinite, low >= 0, low < high, high < 1e12 else {
        throw ValidationError("--window \"\(window)\": expected a start and an end in us such as 1000-2500, the start before the end")
    }
    return low...high
}
