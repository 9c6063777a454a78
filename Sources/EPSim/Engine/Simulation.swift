import EventCore

/// Options of one simulation run that do not change its results.
public struct SimulationOptions: Sendable {
    /// Keep every kernel (`full`) or only per-rank figures (`summary`).
    public var timeline: TimelineDetail
    /// Keep every flow with its post and arrival time (for checks and traces).
    public var recordFlows: Bool

    public init(timeline: TimelineDetail = .full, recordFlows: Bool = false) {
        self.timeline = timeline
        self.recordFlows = recordFlows
    }
}

/// A run that could not complete: a model inconsistency, never bad input (bad input is
/// refused earlier with a ``ScenarioError``).
public struct SimulationError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// A receive buffer was overwritten before it was read (DeepEP's two-buffer rule broken).
        case bufferOverrun = "buffer-overrun"
        /// The event list ran dry while some rank still waited for arrivals.
        case deadlock
        /// A ``StepSource`` gave a plan without one entry per rank.
        case badPlan = "bad-plan"
    }
    public var code: Code
    public var message: String
    public var description: String { "simulation failed (\(code.rawValue)): \(message)" }
}

/// Entry point: runs a scenario with the network model it names.
public enum Simulation {
    /// Simulates `scenario` and returns everything it computed.
    ///
    /// ```swift
    /// let scenario = try Scenario.load(path: "Scenarios/batch-imbalance.yaml")
    /// let result = try Simulation.run(scenario)
    /// print(result.stepLatency.micros)
    /// ```
    public static func run(_ scenario: Scenario, options: SimulationOptions = .init()) throws -> RunResult {
        try run(scenario, source: StaticWorkloadSource(workload: scenario.workload), options: options)
    }

    /// Simulates `scenario` with its batches taken from `source` instead of its `workload`
    /// section's tokens (routing, KV length and the rest of `workload` still apply).
    /// Throws ``SimulationError`` (`bad-plan`) when a plan does not give one entry per rank.
    public static func run(_ scenario: Scenario, source: any StepSource, options: SimulationOptions = .init()) throws -> RunResult {
        let topology = Topology(cluster: scenario.cluster, network: scenario.network)
        switch scenario.network.kind {
        case .ideal:
            let network = IdealNetwork(config: scenario.network, topology: topology)
            var engine = try Engine(scenario: scenario, network: network, source: source, options: options)
            return try engine.run()
        case .ports:
            let network = PortNetwork(config: scenario.network, topology: topology)
            var engine = try Engine(scenario: scenario, network: network, source: source, options: options)
            return try engine.run()
        }
    }
}
