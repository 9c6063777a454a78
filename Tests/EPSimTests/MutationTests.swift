import EventCore
import Foundation
import Testing

@testable import EPSim

/// Random mutations of the shipped scenarios: none traps, and `validate` promises what `run`
/// does (a scenario that reads and passes the budget and time checks runs to the end, or
/// stops only at its wall-time budget).
@Suite("Mutated scenarios")
struct MutationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shipped: [(String, String)] = {
        let dir = root.appendingPathComponent("Scenarios")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.sorted().compactMap { name in
            (try? String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)).map { (name, $0) }
        }
    }()

    /// Values a mutation puts in place of a scalar.
    static let values = [
        "0", "-1", "1", "2", "3", "7", "64", "1e308", "-1e308", "1e15", "1e9", ".nan", ".inf", "nan", "infinite", "[]", "{}", "[1, 2]",
        "abc", "\"\"", "~", "9223372036854775807", "-9223372036854775808", "0.5", "1e-300", "true", "deepseek-prefill", "ports", "ideal",
        "zipf", "{distribution: zipf, exponent: 1.2, max: 64}", "[0, 1, 0, 1]", "100000",
    ]

    /// One mutation of `text`: a line dropped or doubled, the text cut, or one line changed
    /// by `change` (nil: left as it was).
    static func mutateLines(_ text: String, _ g: inout SplitMix64, change: (String, inout SplitMix64) -> String?) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let i = g.next(below: lines.count)
        switch g.next(below: 6) {
        case 0: lines.remove(at: i)
        case 1: lines.insert(lines[i], at: i)
        case 2: return String(text.prefix(g.next(below: text.count + 1)))
        default: if let changed = change(lines[i], &g) { lines[i] = changed }
        }
        return lines.joined(separator: "\n")
    }

    /// One mutation of a scenario: as ``mutateLines(_:_:change:)``, a changed line getting one
    /// number or word after a colon or inside a flow collection replaced.
    static func mutate(_ text: String, _ g: inout SplitMix64) -> String {
        mutateLines(text, &g) { line, g in
            let scalars = line.matches(of: /[:,\[{] ?([A-Za-z0-9_.+\-]+)/).map { $0.output.1 }
            guard !scalars.isEmpty else { return nil }
            var copy = line
            let target = scalars[g.next(below: scalars.count)]
            copy.replaceSubrange(target.startIndex..<target.endIndex, with: values[g.next(below: values.count)])
            return copy
        }
    }

    @Test("mutations of every shipped scenario never trap; what validate accepts runs", arguments: Array(0..<12))
    func mutations(batch: Int) throws {
        var g = SplitMix64(seed: UInt64(7919 * (batch + 1)))
        var (read, refused, ran, stopped) = (0, 0, 0, 0)
        for _ in 0..<40 {
            let (name, original) = Self.shipped[g.next(below: Self.shipped.count)]
            var text = original
            for _ in 0..<(1 + g.next(below: 3)) { text = Self.mutate(text, &g) }
            // A scenario file beside the shipped ones, so relative trace and table paths resolve.
            let scenario: Scenario
            do {
                scenario = try Scenario.load(path: Self.root.appendingPathComponent("Scenarios/\(name)").path, text: text)
            } catch is ScenarioError {
                refused += 1
                continue
            }
            read += 1
            // validate: the budget (small, to keep the test quick) and the time bound.
            let options = SimulationOptions(timeline: .summary, budget: RunBudget(memoryBytes: 200_000_000, wallSeconds: 2))
            do {
                try Simulation.checkBudget(scenario, options: options)
            } catch let e as SimulationError {
                #expect(e.code == .budgetExceeded || e.code == .timeOverflow, "\(name): \(e)")
                refused += 1
                continue
            }
            do {
                let result = try Simulation.run(scenario, options: options)
                ran += 1
                let end = result.rankSteps.map(\.end).max() ?? .zero
                #expect(end.micros <= Simulation.simulatedTimeBound(scenario).micros * (1 + 1e-9) + 1e-6, "\(name): the bound is an upper bound")
            } catch let e as SimulationError {
                // The one thing validate cannot promise: how long the run takes on this machine.
                #expect(e.code == .budgetExceeded && e.message.contains("time budget"), "\(name): validate accepted, run failed: \(e)\n\(text)")
                stopped += 1
            }
        }
        #expect(read + refused > 0 && ran > 0, "the mutations exercised both paths: read \(read), refused \(refused), ran \(ran), stopped \(stopped)")
    }

    @Test("mutated measured tables and routing traces never trap; what reads runs", arguments: Array(0..<4))
    func dataFiles(batch: Int) throws {
        var g = SplitMix64(seed: UInt64(104_729 * (batch + 1)))
        let table = try String(contentsOf: Self.root.appendingPathComponent("Scenarios/tables/h200-shared-dense-fp8.csv"), encoding: .utf8)
        let base = try Scenario.parse(yaml: "cluster: {ranks: 4}\nmodel: {experts: 16, top_k: 4, moe_layers: 2}\nworkload: {tokens_per_rank: 6}\n", file: "t.yaml")
        let trace = (0..<2).map { RoutingTrace.write(RoutingGenerator(workload: base.workload, model: base.model), step: 0, layer: $0) }
            .enumerated().map { layer, text in text.split(separator: "\n").dropFirst().map { String(layer) + $0 }.joined(separator: "\n") }
            .joined(separator: "\n") + "\n"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mut-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var ran = 0
        for k in 0..<30 {
            let isTable = k % 2 == 0
            var text = isTable ? table : trace
            for _ in 0..<(1 + g.next(below: 3)) { text = Self.mutateCSV(text, &g) }
            try text.write(to: dir.appendingPathComponent("data.csv"), atomically: true, encoding: .utf8)
            let yaml =
                isTable
                ? "hardware: h200\ncluster: {ranks: 4}\nmodel: {experts: 16, top_k: 4, moe_layers: 2}\nworkload: {tokens_per_rank: 6}\ncosts: {table: data.csv}\n"
                : "cluster: {ranks: 4}\nmodel: {experts: 16, top_k: 4, moe_layers: 2}\nworkload: {routing: {kind: trace, file: data.csv}}\n"
            try yaml.write(to: dir.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
            guard let s = try? Scenario.load(path: dir.appendingPathComponent("s.yaml").path) else { continue }
            let options = SimulationOptions(timeline: .summary, budget: RunBudget(memoryBytes: 200_000_000, wallSeconds: 2))
            guard (try? Simulation.checkBudget(s, options: options)) != nil else { continue }
            _ = try Simulation.run(s, options: options)
            ran += 1
        }
        #expect(ran > 0)
    }

    /// One mutation of a CSV: as ``mutateLines(_:_:change:)``, a changed line getting one cell replaced.
    static func mutateCSV(_ text: String, _ g: inout SplitMix64) -> String {
        mutateLines(text, &g) { line, g in
            var cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            cells[g.next(below: cells.count)] = ["", "-1", "0", "1e15", "1e300", "nan", "x", "99999999999999999999", "3", "MLP", "ATTN1", " 2 "][g.next(below: 12)]
            return cells.joined(separator: ",")
        }
    }
}
