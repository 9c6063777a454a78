import EventCore

/// The CPU that launches each rank's kernels (`host:` in a scenario). Without it (nil in
/// ``Scenario/host``) the host is always ahead of the GPU: a kernel starts when its stream
/// and its inputs allow, as the contract says.
///
/// With it, each rank's host launches the step's kernels in program order and a kernel
/// cannot start before its launch:
///
/// ```
/// eager:  launch(i) = h0 + (i + 1) x launch_us          (i: the kernel's place in the program)
/// graph:  launch(i) = h0 + graph_launch_us              (one replay launches the whole step)
/// h0(step 0)   = jitter(rank, 0)
/// h0(step s+1) = max(host done with step s, GPU end of step s if waits_for_gpu) + step_gap_us + jitter(rank, s+1)
///                + wake(rank, s+1)   if the GPU would sit idle at least wake_after_idle_us before h0
/// ```
///
/// The wake-up term is the first launch after an idle GPU: on one H100 (stored measurement
/// `calibration/measurements/2026-12-07-h100-host`) a 512-kernel graph replay took 612 us
/// from the launch call to the GPU's end in steady state and 807 us after 100 ms idle
/// (the launch call itself 18 us against 217 us); 1 ms idle cost 9 us, 10 ms 134 us.
///
/// A kernel then starts at `max(stream free + launch gap, launch(i))`; the idle time before
/// it counts as launch gap. The GPU end of a step is its last kernel's end: with
/// `waits_for_gpu` (the default) the host reads the step's output (the sampled tokens)
/// before it prepares the next, so the step gap and the first launches are exposed; without
/// it (overlap scheduling) the host prepares step `s+1` while the GPU runs step `s`.
public struct HostConfig: Sendable, Equatable {
    /// How the host launches a step's kernels.
    public enum Mode: String, Sendable, CaseIterable {
        /// One launch call per kernel (PyTorch eager).
        case eager
        /// One CUDA-graph replay per step.
        case graph
    }

    public var mode: Mode
    /// Host time per kernel launch in eager mode, per rank.
    public var launch: [SimTime]
    /// Host time of one graph replay (launching the whole step), per rank.
    public var graphLaunch: [SimTime]
    /// Host work between a step and the next (scheduling, sampling, preparing inputs), per rank.
    public var stepGap: [SimTime]
    /// Extra host delay of each rank before each step, in nanoseconds: a fixed value per rank
    /// (`.list`) or a distribution drawn per rank and step; nil for none.
    public var jitterNanos: Distribution?
    /// The host waits for the GPU to end a step before it prepares the next (it reads the
    /// step's output); false: overlap scheduling.
    public var waitsForGPU: Bool
    /// Seeds the jitter's draws (the workload's seed).
    public var seed: UInt64
    /// Extra delay of the first launch after the GPU sat idle at least ``wakeAfterIdle``, in
    /// nanoseconds, per rank (`.list`) or drawn per rank and step; nil for none.
    public var wakeNanos: Distribution?
    /// The GPU idle time from which a step pays ``wakeNanos`` (default: the measured
    /// ``HostDefaults/wakeAfterIdleMicros``).
    public var wakeAfterIdle = SimTime(micros: HostDefaults.wakeAfterIdleMicros)

    public init(
        mode: Mode, launch: [SimTime], graphLaunch: [SimTime], stepGap: [SimTime], jitterNanos: Distribution? = nil,
        waitsForGPU: Bool = true, seed: UInt64 = 0
    ) {
        self.mode = mode
        self.launch = launch
        self.graphLaunch = graphLaunch
        self.stepGap = stepGap
        self.jitterNanos = jitterNanos
        self.waitsForGPU = waitsForGPU
        self.seed = seed
    }

    /// Seed purpose of the jitter draws.
    static let jitterPurpose: UInt64 = 0x4A17

    /// The largest jitter a draw may give, in nanoseconds (1 s).
    static let maxJitterNanos = 1_000_000_000

    /// The host's extra delay of `rank` before `step`.
    public func jitter(rank: Int, step: Int) -> SimTime {
        guard let d = jitterNanos else { return .zero }
        return SimTime(picos: Int64(d.draw(rank: rank, step: step, seed: seed, purpose: Self.jitterPurpose, range: 0...Self.maxJitterNanos)) * 1000)
    }

    /// Seed purpose of the wake-up draws.
    static let wakePurpose: UInt64 = 0x3A4E

    /// The extra delay of `rank`'s step `step` when its GPU would sit idle for `idle`.
    public func wake(rank: Int, step: Int, idle: SimTime) -> SimTime {
        guard let d = wakeNanos, idle >= wakeAfterIdle else { return .zero }
        return SimTime(picos: Int64(d.draw(rank: rank, step: step, seed: seed, purpose: Self.wakePurpose, range: 0...Self.maxJitterNanos)) * 1000)
    }

    /// When the host of `rank` has launched instruction `i` of a step it began at `h0`.
    @inline(__always) public func launchTime(rank: Int, instruction i: Int, stepStart h0: SimTime) -> SimTime {
        switch mode {
        case .eager: return h0 + launch[rank].times(Int64(i + 1))
        case .graph: return h0 + graphLaunch[rank]
        }
    }

    /// When the host of `rank` is done launching a step of `instructions` kernels begun at `h0`.
    public func stepLaunched(rank: Int, instructions: Int, stepStart h0: SimTime) -> SimTime {
        instructions == 0 ? h0 : launchTime(rank: rank, instruction: instructions - 1, stepStart: h0)
    }

    /// The largest host time a step can add to a rank's critical path, for the run's time
    /// bound: every launch, the step gap and the largest jitter.
    func largestStepMicros(instructions: Int) -> Double {
        let perStep = mode == .eager ? (launch.max() ?? .zero).micros * Double(instructions) : (graphLaunch.max() ?? .zero).micros
        func largest(_ d: Distribution?) -> Double {
            switch d {
            case nil: return 0
            case .list(let values)?: return Double(values.max() ?? 0) / 1000
            case .constant(let v)?: return min(max(v, 0), Double(Self.maxJitterNanos)) / 1000
            case .uniform(_, let hi)?: return Double(hi) / 1000
            default: return Double(Self.maxJitterNanos) / 1000
            }
        }
        return perStep + (stepGap.max() ?? .zero).micros + largest(jitterNanos) + largest(wakeNanos)
    }
}
