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
        let topology = Topology(cluster: scenario.cluster, network: scenario.network)
        switch scenario.network.kind {
        case .ideal:
            var engine = try Engine(scenario: scenario, network: IdealNetwork(config: scenario.network, topology: topology), options: options)
            return try engine.run()
        case .ports:
            var engine = try Engine(scenario: scenario, network: PortNetwork(config: scenario.network, topology: topology), options: options)
            return try engine.run()
        }
    }
}
