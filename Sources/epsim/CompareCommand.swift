import ArgumentParser
import EPSim
import EPSimStore
import Foundation

enum ComparisonFormat: String, ExpressibleByArgument, CaseIterable {
    case table, csv, json, markdown
}

/// `epsim compare RUN|FILE... [--schedules none,deepseek-decode]`: stored runs and/or
/// scenarios run on the fly (each under one or several schedules), side by side.
///
/// ```
/// $ epsim compare 1 2 3
/// $ epsim compare Scenarios/batch-imbalance.yaml --schedules none,deepseek-decode
/// ```
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Run scenarios side by side (optionally under several schedules) and compare their latencies.")

    @Argument(help: "Stored run ids and/or scenario YAML files (run on the fly, not stored).")
    var items: [String]

    @Option(help: "Comma-separated schedule presets to run every scenario file under (default: each file's own).")
    var schedules: String?

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var limits: BudgetOptions

    @Option(help: "Output format: table, csv, json or markdown.")
    var format: ComparisonFormat = .table

    /// The `--schedules` names, each a preset (checked in `validate()`).
    var scheduleNames: [String]? {
        schedules.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
    }

    func validate() throws {
        if let names = scheduleNames {
            guard !names.contains(where: \.isEmpty) else {
                throw ValidationError("--schedules \"\(schedules!)\": an empty name; expected presets separated by commas, e.g. none,deepseek-decode")
            }
            for name in names { try validateSchedule(name, option: "--schedules") }
        }
    }

    func run() throws {
        let names: [String?] = scheduleNames ?? [nil]
        var columns: [Comparison.Column] = []
        var store: RunStore?
        for path in items {
            if let id = Int64(path), !FileManager.default.fileExists(atPath: path) {
                if store == nil { store = try database.open(.read) }
                let run = try withStore { try store!.run(id) }
                columns.append(.init(label: "run \(id): \(run.listing.scenarioName) [\(run.listing.schedule)]", summary: run.summary))
                if scheduleNames != nil {
                    printError("note: run \(id) was simulated under \(run.listing.schedule) and is shown as stored; --schedules applies to scenario files")
                }
                continue
            }
            for name in names {
                let s = try loadScenario(path, schedule: name)
                let (result, _) = try simulate(s, path: path, options: limits.options(timeline: .summary))
                columns.append(.init(label: "\(s.name) [\(s.schedule.name)]", summary: RunSummary(result: result)))
            }
        }
        print(ComparisonReport.render(Comparison(columns: columns), format: format), terminator: "")
    }
}

/// Renders a ``Comparison``; every column after the first also shows its difference to the first.
enum ComparisonReport {
    static func render(_ c: Comparison, format: ComparisonFormat) -> String {
        let values = c.values
        let names = c.metrics.map(\.name)
        func cell(_ m: Int, _ k: Int) -> String {
            let v = values[m][k]
            guard k > 0 else { return RunReport.us(v) }
            let d = v - values[m][0]
            let pct = values[m][0] != 0 ? String(format: " %+.1f%%", 100 * d / values[m][0]) : ""
            return "\(RunReport.us(v)) (\(String(format: "%+.3f", d))\(pct))"
        }
        switch format {
        case .table:
            let rows = names.indices.map { m in [names[m]] + c.columns.indices.map { cell(m, $0) } }
            return TextTable.render(header: ["metric"] + c.columns.map(\.label), rows: rows)
        case .markdown:
            var out = "| metric | " + c.columns.map(\.label).joined(separator: " | ") + " |\n"
            out += "|---|" + String(repeating: "---:|", count: c.columns.count) + "\n"
            for m in names.indices { out += "| \(names[m]) | " + c.columns.indices.map { cell(m, $0) }.joined(separator: " | ") + " |\n" }
            return out
        case .csv:
            var out = "metric," + c.columns.map { csvField($0.label) }.joined(separator: ",")
            out += "," + c.columns.dropFirst().map { csvField("delta_vs_first " + $0.label) }.joined(separator: ",") + "\n"
            for m in names.indices {
                let vs = c.columns.indices.map { RunReport.us(values[m][$0]) }
                let ds = c.columns.indices.dropFirst().map { RunReport.us(values[m][$0] - values[m][0]) }
                out += ([names[m]] + vs + ds).joined(separator: ",") + "\n"
            }
            return out
        case .json:
            struct Entry: Encodable {
                var label: String
                var metrics: [String: Double]
                var delta_vs_first: [String: Double]
            }
            let entries = c.columns.indices.map { k in
                Entry(
                    label: c.columns[k].label,
                    metrics: Dictionary(uniqueKeysWithValues: names.indices.map { (names[$0], values[$0][k]) }),
                    delta_vs_first: Dictionary(uniqueKeysWithValues: names.indices.map { (names[$0], values[$0][k] - values[$0][0]) }))
            }
            return ((try? jsonString(entries)) ?? "[]") + "\n"
        }
    }

    /// One CSV field (RFC 4180): quoted, with quotes doubled, when it holds a comma, a quote
    /// or a line break.
    static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
