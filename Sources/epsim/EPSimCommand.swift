import ArgumentParser
import EPSim
import Foundation

/// `epsim`: simulate expert-parallel MoE ranks with DeepEP low-latency dispatch and combine.
@main
struct EPSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "epsim",
        abstract: "Discrete-event simulator of expert-parallel MoE ranks with DeepEP low-latency dispatch and combine.",
        subcommands: [
            RunCommand.self, ServeCommand.self, CompareCommand.self, ExplainCommand.self, PlotCommand.self, SweepCommand.self, RunsCommand.self, ExportCommand.self,
            DatabaseCommand.self,
            CalibrateCommand.self, BenchCommand.self, ValidateCommand.self,
        ])
}

/// Reads a scenario file's text (a pipe such as `<(cat f)` included), turning its errors
/// into a message and exit status 65 (data error).
func readScenarioText(_ path: String) throws -> String {
    do {
        return try Scenario.readText(path: PackagePaths.resolve(path))
    } catch let error as ScenarioError {
        printError("error: \(error)")
        throw ExitCode(65)
    }
}

/// Loads a scenario (optionally replacing its schedule by a preset), turning its errors
/// into a message and exit status 65 (data error). `text`, when given, is the file's text
/// already read (a pipe can be read only once).
func loadScenario(_ path: String, text: String? = nil, schedule: String? = nil) throws -> Scenario {
    do {
        let path = PackagePaths.resolve(path)
        var s = try Scenario.load(path: path, text: text ?? Scenario.readText(path: path))
        if let schedule {
            guard let spec = ScheduleSpec.preset(schedule) else {
                printError("error: unknown schedule \"\(schedule)\"; expected one of \(ScheduleSpec.presetNames.joined(separator: ", "))")
                throw ExitCode(64)
            }
            do {
                try s.setSchedule(spec)
            } catch {
                printError("error: \(path): schedule \(schedule): \(error)")
                throw ExitCode(65)
            }
        }
        return s
    } catch let error as ScenarioError {
        printError("error: \(error)")
        throw ExitCode(65)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
