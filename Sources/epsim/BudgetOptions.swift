import ArgumentParser
import EPSim

/// `--max-memory-gb` and `--max-wall-s`: what a simulated run may spend (``RunBudget``).
struct BudgetOptions: ParsableArguments {
    @Option(help: "Memory a run may keep, in GB (10^9 bytes): per-rank figures, kept kernels, the engine's tables; checked before it starts.")
    var maxMemoryGb: Double = Double(RunBudget.standard.memoryBytes!) / 1e9

    @Option(help: "Wall-clock seconds a run may take before it stops (default: no limit).")
    var maxWallS: Double?

    init() {}

    func validate() throws {
        guard maxMemoryGb.isFinite, maxMemoryGb > 0, maxMemoryGb <= 1e6 else { throw ValidationError("--max-memory-gb must be in (0, 1000000], found \(maxMemoryGb)") }
        if let maxWallS, !(maxWallS.isFinite && maxWallS > 0) { throw ValidationError("--max-wall-s must be a positive number of seconds, found \(maxWallS)") }
    }

    var budget: RunBudget { RunBudget(memoryBytes: Int64(maxMemoryGb * 1e9), wallSeconds: maxWallS) }

    /// Simulation options with this budget.
    func options(timeline: TimelineDetail, recordFlows: Bool = false) -> SimulationOptions {
        SimulationOptions(timeline: timeline, recordFlows: recordFlows, budget: budget)
    }
}
