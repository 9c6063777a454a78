import ArgumentParser
import EPSim
import Foundation

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

extension SchedulePreset: ExpressibleByArgument {}
extension TimelineDetail: ExpressibleByArgument {}

/// `epsim run FILE`: simulates a scenario and prints per-rank latency and its breakdown.
///
/// ```
/// $ epsim run Scenarios/batch-imbalance.yaml
/// ```
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Simulate a scenario and print per-rank latencies.")

    @Argument(help: "Scenario YAML file.")
    var scenario: String

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    @Option(help: "Override the scenario's schedule (none, deepseek-decode).")
    var schedule: SchedulePreset?

    @Option(help: "Timeline detail kept in memory: summary or full.")
    var timeline: TimelineDetail = .full

    func run() throws {
        var s = try loadScenario(scenario)
        if let schedule { s.schedule = schedule }
        let clock = ContinuousClock()
        let started = clock.now
        let result: RunResult
        do {
            result = try Simulation.run(s, options: SimulationOptions(timeline: timeline))
        } catch let error as SimulationError {
            printError("error: \(error)")
            throw ExitCode(70)
        }
        let wall = clock.now - started
        let summary = RunSummary(result: result, tokensPerRank: s.workload.tokensPerRank)
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        case .table:
            print(RunReport.table(summary: summary, scenario: s, wallSeconds: wall.seconds))
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
