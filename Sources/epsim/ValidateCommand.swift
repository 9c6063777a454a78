import ArgumentParser
import EPSim

/// `epsim validate FILE`: checks a scenario without running it: everything `run` would
/// refuse before simulating, the memory budget of a run with the same `--timeline`
/// included (exit 65 for a bad file, 70 for a run over its budget).
///
/// ```
/// $ epsim validate Scenarios/batch-imbalance.yaml
/// Scenarios/batch-imbalance.yaml: ok (2 ranks, 2 experts, 1 MoE layers, schedule none; keeps 0.00 GB ...)
/// ```
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Check a scenario file without running it.")

    @Argument(help: "Scenario YAML file(s).")
    var scenarios: [String]

    @Option(help: "The timeline a run would keep (as `run --timeline`): none, summary or full.")
    var timeline: TimelineDetail = .full

    @OptionGroup var limits: BudgetOptions

    /// Checks every file, reporting each; exits with the first failing file's status.
    func run() throws {
        var status: ExitCode?
        for path in scenarios {
            do {
                try check(path)
            } catch let code as ExitCode {
                status = status ?? code
            }
        }
        if let status { throw status }
    }

    func check(_ path: String) throws {
        let s = try loadScenario(path)
        let options = limits.options(timeline: timeline == .full ? .full : .summary)
        do {
            try Simulation.checkBudget(s, options: options)
        } catch let error as SimulationError {
            printError("error: \(path): \(error.code.rawValue): \(error.message)")
            throw ExitCode(70)
        }
        if let note = s.measuredKernelNote { printError("note: \(path): \(note)") }
        print(
            "\(path): ok (\(s.cluster.ranks) ranks, \(s.model.experts) experts, \(s.model.moeLayers) MoE layer\(s.model.moeLayers == 1 ? "" : "s"), schedule \(s.schedule.name); keeps \(Simulation.residentBytes(s, options: options)))"
        )
    }
}
