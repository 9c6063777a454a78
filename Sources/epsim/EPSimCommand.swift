import ArgumentParser
import EPSim
import Foundation

/// `epsim`: simulate expert-parallel MoE ranks with DeepEP low-latency dispatch and combine.
@main
struct EPSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "epsim",
        abstract: "Discrete-event simulator of expert-parallel MoE ranks with DeepEP low-latency dispatch and combine.",
        subcommands: [RunCommand.self, ValidateCommand.self])
}

/// Loads a scenario, turning its errors into a message and exit status 65 (data error).
func loadScenario(_ path: String) throws -> Scenario {
    do {
        return try Scenario.load(path: path)
    } catch let error as ScenarioError {
        printError("error: \(error)")
        throw ExitCode(65)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
