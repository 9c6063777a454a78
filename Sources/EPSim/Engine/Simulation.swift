import EventCore

/// Options of one simulation run that do not change its results.
public struct SimulationOptions: Sendable {
    /// Keep every kernel (`full`) or only per-rank figures (`summary`).
    public var timeline: TimelineDetail
    /// Keep every flow with its post and arrival time (for checks and traces).
    public var recordFlows: Bool
    /// What the run may spend (memory it keeps, wall time); see ``RunBudget``.
    public var budget: RunBudget
    /// Told, every 65,536 engine events, how many kernels have ended of how many the run has
    /// (every rank's every instruction of every step): a progress bar's input. Not called for
    /// runs shorter than that.
    public var progress: (@Sendable (_ kernelsDone: Int, _ kernelsTotal: Int) -> Void)?

    public init(
        timeline: TimelineDetail = .full, recordFlows: Bool = false, budget: RunBudget = .standard,
        progress: (@Sendable (_ kernelsDone: Int, _ kernelsTotal: Int) -> Void)? = nil
    ) {
        self.timeline = timeline
        self.recordFlows = recordFlows
        self.budget = budget
        self.progress = progress
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
        /// The run would keep more memory than its ``RunBudget`` allows, or ran past its time.
        case budgetExceeded = "budget-exceeded"
        /// Simulated time passed ``SimTime/horizon`` (about 53 days): durations too large.
        case timeOverflow = "time-overflow"
        /// A step's micro-batch dispatched more tokens from one rank than DeepEP's buffers hold
        /// (`workload.max_dispatch_tokens_per_rank`).
        case capacityExceeded = "capacity-exceeded"
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

    /// What a run of `scenario` with `options` keeps resident, by part (see ``ResidentEstimate``).
    public static func residentBytes(_ scenario: Scenario, options: SimulationOptions) -> ResidentEstimate {
        residentBytes(scenario, options: options, program: program(of: scenario))
    }

    /// The scenario's program, nil for a schedule the decoder would have refused.
    static func program(of scenario: Scenario) -> Program? {
        try? Program(spec: scenario.schedule, denseLayers: scenario.model.denseLayers, moeLayers: scenario.model.moeLayers)
    }

    static func residentBytes(_ scenario: Scenario, options: SimulationOptions, program: Program?) -> ResidentEstimate {
        let n = Double(scenario.cluster.ranks)
        let steps = Double(scenario.steps)
        let instructions = Double(program?.instructions.count ?? 0)
        let ops = Double(program?.commOpsPerStep ?? 0)
        let topology = Topology(cluster: scenario.cluster, network: scenario.network)
        let network: Double
        switch scenario.network.kind {
        case .ideal: network = Double(IdealNetwork.residentBytes(config: scenario.network, topology: topology))
        case .ports: network = Double(PortNetwork.residentBytes(config: scenario.network, topology: topology))
        case .fair: network = Double(FairNetwork.residentBytes(config: scenario.network, topology: topology))
        }
        // Saturating: an absurd scenario gives Int64.max, never a trap.
        func bytes(_ x: Double) -> Int64 { x >= 9e18 ? .max : Int64(x) }
        // A layer's routing: a count per (source, destination) per micro-batch (twice in
        // normal mode), kept until every combine of it was sent: a few layers at a time.
        let microBatches = Double(program?.microBatches ?? 1)
        let normal = program?.mode == .normal
        let routingTables = n * n * 4 * microBatches * (normal ? 2 : 1) * Double(min(scenario.model.moeLayers * scenario.steps, 4))
        // One drain of deliveries can hold a flow to every rank from every rank (a normal-mode
        // count exchange completing everywhere at once).
        let deliveries = n * n * Double(MemoryLayout<Delivery>.stride)
        // The program: each instruction, its place in its stream and the tables built from it
        // (32 B each: measured with a 1M-instruction schedule, 91 MB peak for 99 MB estimated).
        // A routing trace: every selection of every layer it gives, and its text while read.
        let traceSelections = scenario.workload.trace.map { t in t.selections.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } } ?? 0
        let traceBytes = Double(traceSelections) * (4 + 8)
        // Each rank-step's figures are kept, and summarised once more for output.
        let perRankStep = Double(MemoryLayout<RankStepResult>.stride + 32 + RankMetric.allCases.count * 8)
        return ResidentEstimate(
            rankSteps: bytes(steps * n * perRankStep),
            // Every kernel once, and at the end one rank's while the timeline is flattened.
            kernels: options.timeline == .full ? bytes(steps * n * instructions * Double(MemoryLayout<KernelRecord>.stride) * (1 + 1 / n)) : 0,
            flows: options.recordFlows ? bytes(steps * ops * n * n * Double(MemoryLayout<FlowRecord>.stride)) : 0,
            engine: bytes(
                n * n * Double(MemoryLayout<Path>.stride) + n * instructions * 4 + instructions * Double(MemoryLayout<Instruction>.stride + 32) + network
                    + routingTables + deliveries + traceBytes),
            process: ResidentEstimate.processBaseline)
    }

    /// Throws ``SimulationError`` (`budget-exceeded`) when a run of `scenario` with `options`
    /// would keep more than its memory budget, saying which part and what to change, and
    /// (`time-overflow`) when its durations could carry it past ``SimTime/horizon``
    /// (``checkTimeBound(_:)``). `run` and `validate` both call it before simulating.
    public static func checkBudget(_ scenario: Scenario, options: SimulationOptions) throws {
        // One program for both checks (building it is most of their cost).
        let program = program(of: scenario)
        try checkTimeBound(scenario, program: program)
        if let (r, mb, t) = scenario.capacityOverflow() {
            throw SimulationError(
                code: .capacityExceeded,
                message: "rank \(r) dispatches \(t) tokens in \(scenario.schedule.microBatchName(mb)) of schedule \(scenario.schedule.name), more than workload.max_dispatch_tokens_per_rank (\(scenario.workload.maxDispatchTokensPerRank ?? 0))")
        }
        guard let limit = options.budget.memoryBytes else { return }
        let estimate = residentBytes(scenario, options: options, program: program)
        guard estimate.total > limit else { return }
        var advice = "reduce steps, layers or ranks"
        if estimate.kernels > 0 && estimate.total - estimate.kernels <= limit {
            advice = "keep per-rank figures only (--timeline summary; a library caller can stream kernels to a RunObserver)"
        } else if estimate.flows > 0 && estimate.total - estimate.flows <= limit {
            advice = "do not record every flow"
        }
        throw SimulationError(
            code: .budgetExceeded,
            message: "the run would keep \(estimate), over its memory budget of \(ResidentEstimate.format(limit)): \(advice)")
    }

    /// Simulates `scenario` with its batches taken from `source` instead of its `workload`
    /// section's tokens (routing, KV length and the rest of `workload` still apply), handing
    /// every record to `observer` as it is produced. Throws ``SimulationError``: `bad-plan`
    /// when a plan does not give one entry per rank, `budget-exceeded` when the run would
    /// keep more memory than `options.budget` allows or runs past its time.
    ///
    /// `startTimes`, when given, holds one time per rank: rank `r` begins step 0 then instead
    /// of at zero (a serving loop simulating one step at a time starts each rank where its
    /// previous step ended). Throws `bad-plan` when it does not hold one time per rank.
    public static func run(
        _ scenario: Scenario, source: any StepSource, observer: (any RunObserver)? = nil, options: SimulationOptions = .init(),
        startTimes: [SimTime]? = nil
    ) throws -> RunResult {
        try checkBudget(scenario, options: options)
        if let startTimes, startTimes.count != scenario.cluster.ranks || startTimes.contains(where: { $0 < .zero || $0 >= SimTime.horizon }) {
            throw SimulationError(
                code: .badPlan, message: "start times must give one time per rank (\(scenario.cluster.ranks)), each from zero to \(SimTime.horizon)")
        }
        let topology = Topology(cluster: scenario.cluster, network: scenario.network)
        switch scenario.network.kind {
        case .ideal:
            let network = IdealNetwork(config: scenario.network, topology: topology)
            var engine = try Engine(scenario: scenario, network: network, source: source, observer: observer, options: options)
            return try engine.run(startTimes: startTimes)
        case .ports:
            let network = PortNetwork(config: scenario.network, topology: topology)
            var engine = try Engine(scenario: scenario, network: network, source: source, observer: observer, options: options)
            return try engine.run(startTimes: startTimes)
        case .fair:
            let network = FairNetwork(config: scenario.network, topology: topology)
            var engine = try Engine(scenario: scenario, network: network, source: source, observer: observer, options: options)
            return try engine.run(startTimes: startTimes)
        }
    }
}
