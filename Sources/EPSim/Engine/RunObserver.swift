import EventCore

/// Receives a run's records as the engine produces them, so a consumer (an exporter, a
/// database writer, a live summary) need not wait for the run to end nor hold the whole
/// timeline in memory: pass one to ``Simulation/run(_:source:observer:options:)`` with
/// `timeline: .summary` and no kernel is kept by the engine.
///
/// Kernels arrive in the order they end (ties: the order the engine ends them, which is
/// deterministic); a rank's step arrives when that rank ends it. Every method has a default
/// that ignores the record.
public protocol RunObserver: AnyObject {
    /// A kernel ended.
    func kernelEnded(_ kernel: KernelRecord)
    /// A flow's last control message reached its destination (only when the run records
    /// flows: ``SimulationOptions/recordFlows``).
    func flowDelivered(_ flow: FlowRecord)
    /// A rank ended a step; `result` holds its final figures.
    func rankStepEnded(_ result: RankStepResult)
}

extension RunObserver {
    public func kernelEnded(_ kernel: KernelRecord) {}
    public func flowDelivered(_ flow: FlowRecord) {}
    public func rankStepEnded(_ result: RankStepResult) {}
}

/// What a run may spend: memory for what it keeps, and wall-clock time. A run that would
/// exceed its memory budget is refused before it starts (``Simulation/residentBytes(_:options:)``
/// estimates what it keeps); one that runs past its time budget stops with
/// ``SimulationError/Code-swift.enum/budgetExceeded``. This replaces a fixed cap on flows:
/// a streamed run (summary timeline, kernels to an observer) keeps only per-rank figures,
/// so thousands of EP 256 steps fit.
public struct RunBudget: Sendable, Equatable {
    /// Bytes the run may keep resident (per-rank figures, kept kernels and flows, the
    /// engine's and network's tables); nil for no limit.
    public var memoryBytes: Int64?
    /// Seconds of wall-clock time; nil for no limit. Checked every 65,536 events.
    public var wallSeconds: Double?

    public init(memoryBytes: Int64? = nil, wallSeconds: Double? = nil) {
        self.memoryBytes = memoryBytes
        self.wallSeconds = wallSeconds
    }

    /// The default: 8 GiB of memory (a third of this project's 24 GiB development machine,
    /// so parallel sweep jobs fit), no time limit.
    public static let standard = RunBudget(memoryBytes: 8 << 30, wallSeconds: nil)
}

/// What a run will keep resident, by part, in bytes (an estimate from exact counts: every
/// rank runs every instruction of every step, and every operation sends one flow to every
/// rank).
public struct ResidentEstimate: Sendable, Equatable, CustomStringConvertible {
    /// Per-(rank, step) figures: always kept.
    public var rankSteps: Int64
    /// Every kernel (`timeline: .full` only).
    public var kernels: Int64
    /// Every flow (`recordFlows` only).
    public var flows: Int64
    /// The engine's per-pair tables, routing and deliveries, and the network's port heaps.
    public var engine: Int64
    /// The program itself before it simulates anything.
    public var process: Int64 = 0

    /// 27 MB: the peak resident memory of `epsim validate` and of `epsim run` on a two-rank
    /// scenario (measured, release build, Linux x86-64, 2026-11-29).
    public static let processBaseline: Int64 = 27_000_000

    public var total: Int64 {
        [rankSteps, kernels, flows, engine, process].reduce(0) { $0 > .max - $1 ? .max : $0 + $1 }
    }

    public var description: String {
        "\(Self.format(total)) (per-rank figures \(Self.format(rankSteps)), kernels \(Self.format(kernels)), flows \(Self.format(flows)), engine \(Self.format(engine)), program \(Self.format(process)))"
    }

    /// Bytes with a unit that shows their size: `734 kB`, `12.3 MB`, `4.20 GB`.
    public static func format(_ bytes: Int64) -> String {
        let x = Double(bytes)
        if x >= 1e9 { return String(format: "%.2f GB", x / 1e9) }
        if x >= 1e6 { return String(format: "%.1f MB", x / 1e6) }
        return String(format: "%.0f kB", x / 1e3)
    }
}
