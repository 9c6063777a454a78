import EPSim
import Foundation
import MallocInterposerSwift

/// One gated simulation: a shipped scenario with overrides, and what the run keeps.
struct GateCase {
    var name: String
    var scenario: String
    var overrides: [String]
    var timeline: TimelineDetail
}

/// The cases: the benchmark's DeepSeek-V3 steps, cut to a size that runs in seconds, on
/// both networks, both schedules, a redrawn batch (the step plan) and a summary run.
let cases: [GateCase] = [
    GateCase(name: "decode-ep64-ports-full", scenario: "Scenarios/bench/deepseek-v3-decode-ep64.yaml", overrides: ["model.moe_layers=8"], timeline: .full),
    GateCase(
        name: "decode-ep64-ideal-summary", scenario: "Scenarios/bench/deepseek-v3-decode-ep64.yaml",
        overrides: ["model.moe_layers=8", "network.model=ideal", "steps=4"], timeline: .summary),
    GateCase(
        name: "decode-ep128-redraw-zipf", scenario: "Scenarios/bench/deepseek-v3-decode-ep64.yaml",
        overrides: [
            "cluster.ranks=128", "model.moe_layers=4", "steps=4", "workload.redraw_tokens=true",
            "workload.tokens_per_rank={distribution: zipf, exponent: 1.2, max: 256}",
        ], timeline: .summary),
    GateCase(name: "prefill-ep32-normal", scenario: "Scenarios/bench/deepseek-v3-prefill-ep32.yaml", overrides: ["model.moe_layers=4"], timeline: .full),
]

/// Allocations and events of one run of `c` (the scenario is read outside the counted region).
func measure(_ c: GateCase, root: String) throws -> (allocations: Int, events: Int) {
    let overrides = c.overrides.map { s -> Override in
        let eq = s.firstIndex(of: "=")!
        return Override(keyPath: String(s[..<eq]), value: String(s[s.index(after: eq)...]))
    }
    let scenario = try Scenario.load(path: root + "/" + c.scenario, overrides: overrides)
    let options = SimulationOptions(timeline: c.timeline)
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.hook()
    let result = try Simulation.run(scenario, options: options)
    MallocInterposerSwift.unhook()
    return (MallocInterposerSwift.getStatistics().mallocCount, result.eventCount)
}

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
let thresholdsPath = root + "/Benchmarks/allocations.json"
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(
        """
        USAGE: epsim-allocations [--update]

        Counts the heap allocations of fixed simulations and fails (exit 1) when one allocates
        more than its count in Benchmarks/allocations.json plus 2%. --update records the counts.
        """)
    exit(0)
}
if let unknown = arguments.first(where: { $0 != "--update" }) {
    FileHandle.standardError.write(Data("error: unknown argument \(unknown); usage: epsim-allocations [--update]\n".utf8))
    exit(64)
}
let update = arguments.contains("--update")
/// Headroom over a recorded count before the gate fails: allocation counts are
/// deterministic for one toolchain, but a library's growth policy may move them slightly.
let tolerance = 0.02

var recorded: [String: Int] = [:]
if let data = FileManager.default.contents(atPath: thresholdsPath) {
    do {
        recorded = try JSONDecoder().decode([String: Int].self, from: data)
    } catch {
        FileHandle.standardError.write(Data("error: \(thresholdsPath): not a JSON object of case -> allocation count (\(error))\n".utf8))
        exit(65)
    }
}
var measured: [String: Int] = [:]
var failed = false
print("case                          allocations    events  allocations/event   recorded  verdict")
for c in cases {
    do {
        // A warm-up run first: lazily built globals (the runtime's metadata caches,
        // Foundation's) allocate once per process and are not the simulation's.
        _ = try measure(c, root: root)
        let first = try measure(c, root: root)
        let second = try measure(c, root: root)
        let count = max(first.allocations, second.allocations)
        measured[c.name] = count
        var verdict: String
        // Counts repeat exactly, but for a stray allocation or two (the runtime's hashing
        // seed decides when a dictionary probes a new cache line, a lazily grown buffer).
        if abs(first.allocations - second.allocations) > max(2, count / 1000) {
            verdict = "NOT DETERMINISTIC (\(first.allocations) then \(second.allocations))"
            failed = true
        } else if let limit = recorded[c.name] {
            if Double(count) > Double(limit) * (1 + tolerance) {
                verdict = String(format: "FAIL: %+.1f%% over the recorded count", 100 * (Double(count) / Double(limit) - 1))
                failed = true
            } else {
                verdict = count < limit ? String(format: "ok (%.1f%% fewer: --update records it)", 100 * (1 - Double(count) / Double(limit))) : "ok"
            }
        } else {
            verdict = "no recorded count"
            failed = !update
        }
        print(
            c.name.padding(toLength: 30, withPad: " ", startingAt: 0)
                + String(format: "%11d %9d %18.4f ", count, first.events, Double(count) / Double(max(first.events, 1)))
                + (recorded[c.name].map(String.init) ?? "-").leftPadded(to: 10) + "  "
                + verdict)
    } catch {
        FileHandle.standardError.write(Data("error: \(c.name): \(error)\n".utf8))
        exit(70)
    }
}
if update {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(measured).write(to: URL(fileURLWithPath: thresholdsPath))
    print("recorded \(measured.count) counts in \(thresholdsPath)")
} else if failed {
    print("allocation gate failed")
    exit(1)
} else {
    print("allocation gate passed (tolerance \(Int(tolerance * 100))%)")
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
