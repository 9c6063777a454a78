import EventCore

/// One kernel as it ran: the row of a timeline.
public struct KernelRecord: Sendable, Equatable {
    public var rank: Int32
    public var step: Int32
    public var layer: Int32
    public var microBatch: MicroBatch
    public var kind: KernelKind
    public var stream: StreamKind
    public var start: SimTime
    public var end: SimTime
    /// Time spent resident but spinning for arrivals (RECV parts only).
    public var wait: SimTime
    public var bytesOut: Int64
    public var bytesIn: Int64
    /// Tokens the kernel handled: the micro-batch's tokens for attention and shared experts,
    /// tokens received for MLP, data messages sent or received for communication kernels,
    /// rows reduced for RECV-C.
    public var tokens: Int64
    /// For a RECV that waited: the rank whose flow arrived last (ties: the lowest rank); -1 otherwise.
    public var blocker: Int32
    /// For a RECV: arrival time of its last flow (the moment the wait ended).
    public var lastArrival: SimTime?
    /// For a SEND: the time its flows were posted (end of the SEND part).
    public var sendEnd: SimTime?
    /// For a RECV that waited: why its last message came late.
    public var blameReason: BlameReason = .none
    /// For a RECV that waited: the part of `wait` its blocker caused by starting late or
    /// sending more; the rest is the network's.
    public var blockerLag: SimTime = .zero

    public var duration: SimTime { end - start }

    public init(
        rank: Int32, step: Int32, layer: Int32, microBatch: MicroBatch, kind: KernelKind, stream: StreamKind,
        start: SimTime, end: SimTime, wait: SimTime, bytesOut: Int64, bytesIn: Int64, tokens: Int64, blocker: Int32,
        lastArrival: SimTime?, sendEnd: SimTime?, blameReason: BlameReason = .none, blockerLag: SimTime = .zero
    ) {
        self.rank = rank
        self.step = step
        self.layer = layer
        self.microBatch = microBatch
        self.kind = kind
        self.stream = stream
        self.start = start
        self.end = end
        self.wait = wait
        self.bytesOut = bytesOut
        self.bytesIn = bytesIn
        self.tokens = tokens
        self.blocker = blocker
        self.lastArrival = lastArrival
        self.sendEnd = sendEnd
        self.blameReason = blameReason
        self.blockerLag = blockerLag
    }
}

/// One flow as carried by the network (recorded only on request, for checks and tracing).
public struct FlowRecord: Sendable, Equatable {
    public var flow: Flow
    public var posted: SimTime
    public var arrival: SimTime
}

/// What one rank did in one step.
public struct RankStepResult: Sendable, Equatable {
    public var rank: Int32
    public var step: Int32
    /// The rank's tokens in this step.
    public var tokens: Int = 0
    public var start: SimTime = .zero
    public var end: SimTime = .zero
    /// Sum of kernel durations minus their wait: time the rank's SMs did work.
    public var busy: SimTime = .zero
    /// `ATTN0 + ATTN1`.
    public var attention: SimTime = .zero
    public var shared: SimTime = .zero
    public var dense: SimTime = .zero
    public var gemm: SimTime = .zero
    /// All dispatch kernels (SEND-D, RECV-D or the fused DISPATCH), wait included.
    public var dispatch: SimTime = .zero
    public var dispatchWait: SimTime = .zero
    /// All combine kernels (SEND-C, RECV-C or the fused COMBINE), wait included.
    public var combine: SimTime = .zero
    public var combineWait: SimTime = .zero
    /// Explicit `BARRIER` kernels (all of it spent waiting for every rank).
    public var barrier: SimTime = .zero
    /// Compute kernels (attention, shared, GEMM, dense) on the compute stream.
    public var computeOnComputeStream: SimTime = .zero
    /// Launch gaps on the compute stream (idle, neither compute nor communication). Not
    /// stored: a run read back from the database folds them into `computeOnComputeStream`.
    public var launchGaps: SimTime = .zero

    public init(rank: Int32, step: Int32) {
        self.rank = rank
        self.step = step
    }

    /// End-to-end step latency of this rank: first kernel start to last kernel end.
    public var latency: SimTime { end - start }
    public var wait: SimTime { dispatchWait + combineWait + barrier }
    /// The part of the step latency not covered by compute (or launch gaps) on the compute
    /// stream: the communication (and its wait) that overlap failed to hide.
    public var exposedCommunication: SimTime { latency - computeOnComputeStream - launchGaps }
}

/// How much of the timeline a run keeps (and stores).
public enum TimelineDetail: String, Sendable, CaseIterable {
    /// Per-run figures only (including means over ranks): no per-rank rows, no kernels.
    case none
    /// Per-run and per-rank (per step) figures.
    case summary
    /// Every kernel as a ``KernelRecord``, too.
    case full
}

/// Everything a run computed, in a value that storage and exports consume.
public struct RunResult: Sendable {
    public var scenarioName: String
    /// Name of the schedule (a preset name or the file's own).
    public var schedule: String
    public var ranks: Int
    public var steps: Int
    /// `rankSteps[step * ranks + rank]`.
    public var rankSteps: [RankStepResult]
    /// Kernels sorted by (rank, start, stream); empty unless the timeline is `full`.
    public var kernels: [KernelRecord]
    /// Flows in posting order; empty unless flows were requested.
    public var flows: [FlowRecord]
    /// Kernels executed, flows carried, data messages carried, events processed (the
    /// engine's and the network model's).
    public var kernelCount: Int
    public var flowCount: Int
    public var messageCount: Int64
    public var eventCount: Int
    /// Total RECV wait each rank caused other ranks as their last arrival (`blockedWait[rank]`;
    /// a rank waiting on its own flow is not counted, nor a wait whose last arrivals tie).
    public var blockedWait: [SimTime]
    /// Tokens the run's requests keep, over all ranks and steps: one per request and step,
    /// plus the expected accepted draft tokens with multi-token prediction
    /// (``Workload/acceptedTokensPerRequest(draftTokens:acceptanceRate:)``); in prefill, the
    /// tokens processed. nil for a run read back from a database that did not store it.
    public var acceptedTokens: Double?

    public init(
        scenarioName: String, schedule: String, ranks: Int, steps: Int, rankSteps: [RankStepResult], kernels: [KernelRecord],
        flows: [FlowRecord], kernelCount: Int, flowCount: Int, messageCount: Int64, eventCount: Int, blockedWait: [SimTime],
        acceptedTokens: Double? = nil
    ) {
        self.acceptedTokens = acceptedTokens
        self.scenarioName = scenarioName
        self.schedule = schedule
        self.ranks = ranks
        self.steps = steps
        self.rankSteps = rankSteps
        self.kernels = kernels
        self.flows = flows
        self.kernelCount = kernelCount
        self.flowCount = flowCount
        self.messageCount = messageCount
        self.eventCount = eventCount
        self.blockedWait = blockedWait
    }

    public func rankStep(rank: Int, step: Int) -> RankStepResult { rankSteps[step * ranks + rank] }

    /// When the last rank ended its last step (every rank starts at 0).
    public var makespan: SimTime { rankSteps.map(\.end).max() ?? .zero }

    /// ``acceptedTokens`` per second per GPU: over all ranks and steps, divided by the ranks
    /// and the ``makespan``. nil when unknown or nothing ran.
    public var acceptedTokensPerSecondPerGPU: Double? {
        guard let acceptedTokens, makespan > .zero, ranks > 0 else { return nil }
        return acceptedTokens / (makespan.micros * 1e-6) / Double(ranks)
    }

    /// Step latency of each step: the maximum over ranks of their own step latency.
    public var stepLatencies: [SimTime] {
        (0..<steps).map { s in rankSteps[(s * ranks)..<((s + 1) * ranks)].map(\.latency).max() ?? .zero }
    }

    /// Step latency of the run: the maximum over steps of ``stepLatencies``.
    public var stepLatency: SimTime { stepLatencies.max() ?? .zero }

    /// The rank with the longest latency in the slowest step (lowest rank on ties).
    public var slowestRank: Int {
        let s = stepLatencies.firstIndex(of: stepLatency) ?? 0
        let row = rankSteps[(s * ranks)..<((s + 1) * ranks)]
        return Int(row.first(where: { $0.latency == stepLatency })?.rank ?? 0)
    }
}
