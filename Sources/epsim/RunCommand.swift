import ArgumentParser
import EPSim
import Foundation

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

extension TimelineDetail: ExpressibleByArgument {}

/// `epsim run FILE`: simulates a scenario and prints per-rank latency and its breakdown.
///
/// ```
/// $ epsim run Scenarios/batch-imbalance.yaml --schedule deepseek-decode
/// ```
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Simulate a scenario and print per-rank latencies.")

    @Argument(help: "Scenario YAML file.")
    var scenario: String

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    @Option(help: "Override the scenario's schedule with a preset: \(ScheduleSpec.presetNames.joined(separator: ", ")).")
    var schedule: String?

    @Option(help: "Timeline detail kept in memory: summary or full.")
    var timeline: TimelineDetail = .full

    func run() throws {
        let s = try loadScenario(scenario, schedule: schedule)
        let (result, wall) = try simulate(s, options: SimulationOptions(timeline: timeline))
        let summary = RunSummary(result: result, tokensPerRank: s.workload.tokensPerRank)
        switch format {
        case .json: print(try jsonString(summary))
        case .table: print(RunReport.table(summary: summary, scenario: s, wallSeconds: wall))
        }
    }
}

/// Runs a scenario, timing it, and maps a simulation failure to exit status 70.
func simulate(_ s: Scenario, options: SimulationOptions) throws -> (RunResult, Double) {
    let clock = ContinuousClock()
    let started = clock.now
    do {
        let result = try Simulation.run(s, options: options)
        return (result, (clock.now - started).seconds)
    } catch let error as SimulationError {
        printError("error: \(error)")
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
