import ArgumentParser
import EPSim

/// `epsim validate FILE`: checks a scenario without running it.
///
/// ```
/// $ epsim validate Scenarios/batch-imbalance.yaml
/// Scenarios/batch-imbalance.yaml: ok (2 ranks, 2 experts, 1 MoE layers, schedule none)
/// ```
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Check a scenario file without running it.")

    @Argument(help: "Scenario YAML file(s).")
    var scenarios: [String]

    func run() throws {
        for path in scenarios {
            let s = try loadScenario(path)
            print("\(path): ok (\(s.cluster.ranks) ranks, \(s.model.experts) experts, \(s.model.moeLayers) MoE layers, schedule \(s.schedule.name))")
        }
    }
}
