import EventCore

/// What the future-event list holds: a lane's current kernel reaching a phase boundary.
struct EngineEvent {
    enum Kind: UInt8 {
        /// The SEND part of the lane's kernel is done: post its flows.
        case sendDone
        /// The lane's kernel ends.
        case kernelEnd
        /// The lane's next kernel starts after the launch gap.
        case launch
        /// Single-batch overlap: the lane's `MLP` reached its down projection, releasing the
        /// combine SEND that overlaps it.
        case release
    }
    /// `rank * 2 + stream`.
    var lane: Int32
    var kind: Kind
    /// The lane's version when scheduled; a compute kernel whose speed changed is
    /// rescheduled under a new version and the old event is ignored.
    var version: UInt32
}

/// Where a lane's current kernel is.
enum LanePhase: UInt8 {
    case idle
    /// Between kernels: the next kernel starts when the launch gap has passed.
    case launching
    /// A compute kernel progressing at the rate of the SMs it has.
    case compute
    /// Normal-mode dispatch: waiting for every rank's counts before sending.
    case notifyWait
    /// An explicit barrier: waiting for every rank to reach it.
    case barrierWait
    case send
    /// Resident and spinning until the last flow of its operation arrives.
    case receiveWait
    /// Copying or reducing after the last arrival.
    case copy
}

/// One stream of one rank: its position in the program and its current kernel.
struct LaneState {
    var pc = 0
    var phase = LanePhase.idle
    var instruction = -1
    var version: UInt32 = 0
    var kernelStart: SimTime = .zero
    var bytesOut: Int64 = 0
    var bytesIn: Int64 = 0
    var tokens: Int64 = 0
    var wait: SimTime = .zero
    var blocker: Int32 = -1
    var blockerWait: SimTime = .zero
    var lastArrival: SimTime? = nil
    var sendEnd: SimTime? = nil
    var blameReason = BlameReason.none
    var blockerLag: SimTime = .zero
    /// Compute kernels: work left in SM-picoseconds, the SMs it runs on, and since when.
    var workLeft: Int64 = 0
    var sms: Int64 = 0
    var lastUpdate: SimTime = .zero
    /// Single-batch overlap: the `MLP`'s work left (SM-ps) at which its down projection
    /// starts and releases its combine SEND; -1 when nothing waits for it.
    var releaseWorkLeft: Int64 = -1
    /// End of the lane's previous kernel (debug check: kernels on a stream never overlap).
    var previousEnd: SimTime = .zero
}

struct RankState {
    var step: Int32 = 0
    var done = false
    /// A kernel on the comm stream is resident and holds `commSMs` SMs.
    var commResident = false
}

/// Arrivals of one operation at one receiver: DeepEP's per-(source, expert) count slots
/// (dispatch) or per-expert flags (combine), aggregated per source rank.
struct RecvSlot {
    var operation: Int32 = -1
    var arrived: Int32 = 0
    var bytesIn: Int64 = 0
    var messagesIn: Int64 = 0
    var lastArrival: SimTime = .zero
    var blocker: Int32 = -1
    /// The last flow's particulars, for blame: its bytes, messages, path, SEND start and end.
    var blockerBytes: Int64 = 0
    var blockerMessages: Int32 = 0
    /// Another flow arrived at exactly `lastArrival`: the wait is no one rank's (the blocker
    /// is then the lowest of them, for blame, but ``RunResult/blockedWait`` charges nobody).
    var lastTied = false
    var blockerPath = Path.nvlink
    var blockerStarted: SimTime = .zero
    var blockerPosted: SimTime = .zero
    /// The lane spinning on this slot, or -1.
    var waitingLane: Int32 = -1
    var consumed = true
    var recvStart: SimTime = .zero

    /// Counts one flow's arrival: its bytes and messages, and (for blame) the flow as the
    /// slot's blocker when it arrived last so far (ties: the lowest source rank).
    @inline(__always) mutating func add(_ delivery: Delivery) {
        let flow = delivery.flow
        arrived += 1
        bytesIn += flow.bytes
        messagesIn += Int64(flow.messages)
        if blocker >= 0 && delivery.arrival == lastArrival { lastTied = true } else if delivery.arrival > lastArrival { lastTied = false }
        if blocker < 0 || delivery.arrival > lastArrival || (delivery.arrival == lastArrival && flow.source < blocker) {
            lastArrival = delivery.arrival
            blocker = flow.source
            blockerBytes = flow.bytes
            blockerMessages = flow.messages
            blockerPath = flow.path
            blockerStarted = delivery.started
            blockerPosted = delivery.posted
        }
    }
}

/// A layer's routing kept until every rank has sent its combine for it.
struct CachedRouting {
    var routing: LayerRouting
    var remainingCombineSends: Int
}

/// The discrete-event engine: every kernel is an event gated on its stream, on its
/// cross-stream producers and, for RECV kernels, on the arrival of every flow it waits
/// for; there is no barrier anywhere (normal-mode count exchanges are the one
/// synchronisation, and they are messages too).
///
/// Generic over the network model so that the model is specialised into the loop.
struct Engine<Net: NetworkModel & ~Copyable>: ~Copyable {
    static var ringSize: Int { 4 }

    let scenario: Scenario
    let options: SimulationOptions
    let n: Int
    let program: Program
    let instructions: [Instruction]
    let opsPerStep: Int
    let microBatches: Int
    let cost: CostModel
    let router: RoutingGenerator
    let localExperts: [[Int]]
    /// ``ExpertGEMMLayout/padded``: the rows of each local expert's buffer slice (`ranks x C`).
    let capacityRows: Int?
    let dispatchBytes: Int64
    let combineBytes: Int64
    let totalSMs: Int64
    let commSMs: Int64
    let normalMode: Bool
    /// `paths[s * N + d]`: the transport from `s` to `d`.
    let paths: [Path]
    /// Low-latency kernels with a finite per-(peer, expert) warp-group rate: the routing
    /// keeps each destination's largest (source, slot) pair.
    let pairLimited: Bool
    /// Idle time of a stream before each kernel (``CostConfig/launchGap``).
    let launchGap: SimTime
    /// The CPU launching the kernels, nil when always ahead (``HostConfig``).
    let host: HostConfig?
    /// Per rank: when its host began launching its current step (`h0`), and when it will be
    /// done launching it.
    var hostStepStart: [SimTime]
    var hostDone: [SimTime]

    var net: Net
    /// Where each step's batches come from (``StepSource``).
    var source: any StepSource
    /// Receives kernels, flows and rank steps as they are produced.
    let observer: (any RunObserver)?
    /// When the run started, for the time budget.
    let wallStart = ContinuousClock.now
    /// The plans of the steps some rank is in, and how many ranks have ended each.
    var plans: [Int: (plan: StepPlan, ranksDone: Int)] = [:]
    var queue: EventQueue<EngineEvent>
    var deliveries: [Delivery] = []
    /// `drainDeliveries` is running (a nested call leaves the new deliveries to it).
    var draining = false
    var ranks: [RankState]
    var lanes: [LaneState]
    /// `completedInStep[rank * P + instruction] == step + 1` once it ran in that step.
    var completedInStep: [Int32]
    /// `releasedInStep[rank * P + instruction] == step + 1` once that `MLP` reached its down
    /// projection in that step (single-batch overlap).
    var releasedInStep: [Int32]
    /// `slots[rank * ringSize + operation % ringSize]`; written once per flow, so kept in
    /// a ``FixedTable`` (no copy-on-write check per write).
    var slots: FixedTable<RecvSlot>
    /// Each rank's own SEND of each operation in flight (ring like `slots`): start and end.
    var ownSends: [(operation: Int32, start: SimTime, end: SimTime)]
    var routingCache: [Int: CachedRouting] = [:]
    var rankSteps: [RankStepResult]
    var kernelsByRank: [[KernelRecord]]
    var flows: [FlowRecord] = []
    var blockedWait: [SimTime]
    /// Expected tokens kept over all ranks and steps so far (``RunResult/acceptedTokens``).
    var acceptedTokens = 0.0
    var kernelCount = 0
    var flowCount = 0
    var messageCount: Int64 = 0
    var eventCount = 0
    /// The time of the last event processed (debug check: time never goes backwards).
    var clock: SimTime = .zero

    init(scenario: Scenario, network: consuming Net, source: any StepSource, observer: (any RunObserver)?, options: SimulationOptions) throws {
        self.scenario = scenario
        self.options = options
        n = scenario.cluster.ranks
        program = try Program(spec: scenario.schedule, denseLayers: scenario.model.denseLayers, moeLayers: scenario.model.moeLayers)
        instructions = program.instructions
        opsPerStep = program.commOpsPerStep
        microBatches = program.microBatches
        normalMode = program.mode == .normal
        cost = CostModel(costs: scenario.costs, model: scenario.model, phase: scenario.workload.phase)
        router = RoutingGenerator(workload: scenario.workload, model: scenario.model)
        var local = [[Int]](repeating: [], count: n)
        for (e, r) in scenario.model.placement.enumerated() { local[Int(r)].append(e) }
        localExperts = local
        capacityRows =
            scenario.costs.expertGEMM == .padded ? scenario.workload.maxDispatchTokensPerRank.map { $0 * scenario.cluster.ranks } : nil
        dispatchBytes = scenario.model.dispatchMessageBytes
        combineBytes = scenario.model.combineMessageBytes
        totalSMs = Int64(scenario.cluster.smsPerGPU)
        commSMs = Int64(program.commSMs)
        let topology = network.topology
        net = network
        self.source = source
        self.observer = observer
        let rankCount = n
        paths = (0..<(n * n)).map { topology.path(from: RankID($0 / rankCount), to: RankID($0 % rankCount)) }
        pairLimited = !normalMode && (scenario.costs.dispatchRecv.pairGBps.isFinite || scenario.costs.combineSend.pairGBps.isFinite)
        launchGap = scenario.costs.launchGap
        host = scenario.host
        hostStepStart = Array(repeating: .zero, count: scenario.host == nil ? 0 : n)
        hostDone = hostStepStart
        queue = EventQueue(reservingCapacity: 4 * n)
        ranks = Array(repeating: RankState(), count: n)
        lanes = Array(repeating: LaneState(), count: 2 * n)
        completedInStep = Array(repeating: 0, count: n * program.instructions.count)
        releasedInStep = Array(repeating: 0, count: program.overlapDownGEMM ? n * program.instructions.count : 0)
        slots = FixedTable(repeating: RecvSlot(), count: n * Self.ringSize)
        ownSends = Array(repeating: (-1, .zero, .zero), count: n * Self.ringSize)
        rankSteps = (0..<scenario.steps).flatMap { s in (0..<rankCount).map { RankStepResult(rank: Int32($0), step: Int32(s)) } }
        kernelsByRank = Array(repeating: [], count: options.timeline == .full ? n : 0)
        // Every rank runs every instruction of every step: reserve exactly that, so the
        // timeline never holds the slack of a doubling array (``Simulation/residentBytes``).
        for r in kernelsByRank.indices { kernelsByRank[r].reserveCapacity(scenario.steps * program.instructions.count) }
        blockedWait = Array(repeating: .zero, count: n)
    }

    /// Runs every step; rank `r` begins step 0 at `startTimes[r]` (all at zero when nil).
    mutating func run(startTimes: [SimTime]? = nil) throws -> RunResult {
        for r in 0..<n { try startStep(r, at: startTimes?[r] ?? .zero) }
        while true {
            if let tn = net.nextEventTime(), queue.nextTime.map({ tn <= $0 }) ?? true {
                assert(tn >= clock, "time went backwards: network event at \(tn) after \(clock)")
                if tn >= SimTime.horizon { throw horizonPassed(at: tn, lane: 0) }
                clock = tn
                net.advance(to: tn, deliveries: &deliveries)
                try drainDeliveries()
                continue
            }
            guard let (now, event) = queue.pop() else { break }
            assert(now >= clock, "time went backwards: engine event at \(now) after \(clock)")
            if now >= SimTime.horizon { throw horizonPassed(at: now, lane: Int(event.lane)) }
            clock = now
            let lane = Int(event.lane)
            guard event.version == lanes[lane].version else { continue }
            eventCount += 1
            if eventCount & 0xFFFF == 0 {
                try checkWallBudget(at: now)
                options.progress?(kernelCount, n * scenario.steps * program.instructions.count)
            }
            switch event.kind {
            case .sendDone: try sendDone(lane, at: now)
            case .kernelEnd: try finishKernel(lane, at: now)
            case .launch: try startKernel(lane: lane, instruction: lanes[lane].instruction, at: now, launched: true)
            case .release: try releaseDownGEMM(lane, at: now)
            }
        }
        if let stuck = ranks.indices.first(where: { !ranks[$0].done }) {
            let waiting = (0..<2).map { stuck * 2 + $0 }.filter { lanes[$0].instruction >= 0 }
            let what = waiting.map { "\(instructions[lanes[$0].instruction].label)" }.joined(separator: " and ")
            throw SimulationError(
                code: .deadlock,
                message: "rank \(stuck) never finished step \(ranks[stuck].step): stuck in \(what.isEmpty ? "a stream waiting on the other" : what)")
        }
        return RunResult(
            scenarioName: scenario.name, schedule: scenario.schedule.name, ranks: n, steps: scenario.steps,
            rankSteps: rankSteps, kernels: flattenKernels(), flows: flows,
            kernelCount: kernelCount, flowCount: flowCount, messageCount: messageCount, eventCount: eventCount + net.eventCount,
            blockedWait: blockedWait, acceptedTokens: acceptedTokens)
    }

    /// Throws `budget-exceeded` once the run has taken longer than its wall-time budget.
    /// Checked every 65,536 events and before each layer's routing is drawn (a layer of a
    /// million tokens takes seconds on its own).
    func checkWallBudget(at now: SimTime) throws {
        guard let limit = options.budget.wallSeconds else { return }
        if ContinuousClock.now - wallStart > .milliseconds(Int64((limit * 1000).rounded(.up))) {
            throw SimulationError(
                code: .budgetExceeded, message: "the run passed its time budget of \(limit) s at simulated time \(now) (\(eventCount) events)")
        }
    }

    /// Every rank's kernels in rank order, each rank's array freed once copied, so the
    /// timeline is held about once, not twice, at the end of a run.
    mutating func flattenKernels() -> [KernelRecord] {
        var all: [KernelRecord] = []
        all.reserveCapacity(kernelsByRank.reduce(0) { $0 + $1.count })
        for r in kernelsByRank.indices {
            all.append(contentsOf: kernelsByRank[r])
            kernelsByRank[r] = []
        }
        return all
    }

    /// The run passed ``SimTime/horizon``: what to tell the user.
    func horizonPassed(at now: SimTime, lane: Int) -> SimulationError {
        let r = lane >> 1
        let instr = lanes[lane].instruction >= 0 ? instructions[lanes[lane].instruction].label : "its next kernel"
        return SimulationError(
            code: .timeOverflow,
            message: "simulated time passed \(SimTime.horizon.micros / 86_400e6) days (the most EPSim represents) at rank \(r), step \(ranks[r].step), \(instr): the scenario's durations or steps are too large (a cost in costs:, a measured table row, or steps x the step time)")
    }

    // MARK: Steps and lanes

    mutating func startStep(_ r: Int, at now: SimTime) throws {
        let step = Int(ranks[r].step)
        if plans[step] == nil {
            let plan = source.plan(step: step, at: now)
            let range = 0...ScenarioLimits.maxTokensPerRank
            guard plan.tokens.count == n, plan.kvLength.count == n, plan.microBatchATokens.map({ $0.count == n }) ?? true,
                plan.tokens.allSatisfy(range.contains), plan.kvLength.allSatisfy({ $0 >= 0 }),
                plan.microBatchATokens?.allSatisfy({ $0 >= 0 }) ?? true
            else {
                throw SimulationError(
                    code: .badPlan,
                    message: "the step source's plan of step \(step) must give one entry per rank (\(n) ranks), tokens in \(range), no negative KV length or micro-batch A size")
            }
            if let kv = plan.requestKV,
                kv.count != n || kv.indices.contains(where: { kv[$0].count != plan.requests(rank: $0, tokens: plan.tokens[$0]) || kv[$0].contains { $0 < 0 } })
            {
                throw SimulationError(
                    code: .badPlan, message: "the step source's plan of step \(step) must give each rank one non-negative KV length per request")
            }
            if let q = plan.queryTokensPerRequest,
                q.count != n || q.indices.contains(where: { q[$0] < 1 || plan.tokens[$0] % q[$0] != 0 })
            {
                throw SimulationError(
                    code: .badPlan,
                    message: "the step source's plan of step \(step) must give each rank's tokens per request (at least 1, one entry per rank), and tokens that are whole requests")
            }
            try checkCapacity(plan)
            for r in 0..<n {
                acceptedTokens +=
                    Double(plan.tokens[r] / plan.queryTokens(rank: r))
                    * Workload.acceptedTokensPerRequest(draftTokens: plan.queryTokens(rank: r) - 1, acceptanceRate: scenario.workload.acceptanceRate)
            }
            plans[step] = (plan, 0)
        }
        rankSteps[step * n + r].start = now
        rankSteps[step * n + r].tokens = plans[step]!.plan.tokens[r]
        if let host {
            // The host prepares the step (after reading the last one's output, unless it
            // schedules ahead), then launches its kernels in program order.
            let ready = step == 0 ? now : max(hostDone[r], host.waitsForGPU ? now : .zero) + host.stepGap[r]
            let h0 = ready + host.jitter(rank: r, step: step)
            hostStepStart[r] = step == 0 ? h0 : h0 + host.wake(rank: r, step: step, idle: h0 > now ? h0 - now : .zero)
            hostDone[r] = host.stepLaunched(rank: r, instructions: instructions.count, stepStart: hostStepStart[r])
        }
        for s in 0..<2 { lanes[r * 2 + s].pc = 0 }
        for s in 0..<2 { try tryStart(lane: r * 2 + s, at: now) }
    }

    /// Throws `capacity-exceeded` when some rank's micro-batch of `plan` dispatches more
    /// tokens than `workload.max_dispatch_tokens_per_rank` (DeepEP checks the same:
    /// `x.size(0) <= num_max_dispatch_tokens_per_rank`, once per dispatch call).
    func checkCapacity(_ plan: StepPlan) throws {
        guard let capacity = scenario.workload.maxDispatchTokensPerRank else { return }
        for r in 0..<n {
            for m in 0..<microBatches {
                let t = plan.tokenRange(rank: r, microBatch: MicroBatch(rawValue: UInt8(m))!, of: microBatches).count
                if t > capacity {
                    throw SimulationError(
                        code: .capacityExceeded,
                        message: "step \(plan.step): rank \(r) dispatches \(t) tokens in micro-batch \(m == 0 ? "A" : "B"), more than workload.max_dispatch_tokens_per_rank (\(capacity))")
                }
            }
        }
    }

    /// Starts the lane's next kernel if the lane is free and the kernel's cross-stream
    /// producers have ended in this step.
    mutating func tryStart(lane: Int, at now: SimTime) throws {
        let r = lane >> 1
        let stream = program.streams[lane & 1]
        guard lanes[lane].phase == .idle, lanes[lane].pc < stream.count else { return }
        let i = Int(stream[lanes[lane].pc])
        let stepMark = ranks[r].step + 1
        let base = r * instructions.count
        for dep in instructions[i].crossStreamDependencies where completedInStep[base + Int(dep)] != stepMark {
            // Single-batch overlap: the down projection's start releases the combine SEND.
            if dep == instructions[i].releasedByDownGEMM && releasedInStep[base + Int(dep)] == stepMark { continue }
            return
        }
        try startKernel(lane: lane, instruction: i, at: now, launched: launchGap == .zero && host == nil)
    }

    /// What a compute kernel works on and how long it takes.
    mutating func computeWork(lane: Int, instruction i: Int) -> (work: ComputeWork, duration: SimTime) {
        let r = lane >> 1
        let instr = instructions[i]
        let step = Int(ranks[r].step)
        let mb = instr.microBatch
        var work = ComputeWork()
        if instr.kind == .mlp {
            let routing = routingFor(step: step, moeLayer: Int(instr.moeLayer)).routing
            for m in 0..<microBatches {
                var received = 0
                for e in localExperts[r] { received += Int(routing.microBatches[m].expertLoad[e]) }
                if m == 0 { work.receivedA = received }
                if m == Int(mb.rawValue) { work.received = received }
                work.receivedTotal += received
            }
            work.expertTokens = localExperts[r].map { routing.microBatches[Int(mb.rawValue)].expertLoad[$0] }
            work.capacityRows = capacityRows
        } else {
            work.wholeBatch = instr.moeLayer < 0
            let plan = plans[step]!.plan
            work.tokensTotal = plan.tokens[r]
            work.tokensA = plan.tokenRange(rank: r, microBatch: .a, of: microBatches).count
            work.tokens = plan.tokenRange(rank: r, microBatch: mb, of: microBatches).count
            work.kvLength = plan.kvLength[r]
            work.kvTokens = plan.kvTokens(rank: r, range: work.wholeBatch ? 0..<work.tokensTotal : plan.tokenRange(rank: r, microBatch: mb, of: microBatches))
            if plan.queryTokens(rank: r) > 1 {
                work.requests = plan.requests(rank: r, tokens: work.wholeBatch ? work.tokensTotal : work.tokens)
            }
        }
        return (work, cost.computeDuration(instr.kind, rank: RankID(r), microBatch: mb, microBatches: microBatches, work: work))
    }

    /// Starts kernel `i` on the lane now, or (`launched` false, a launch gap set) after the
    /// gap: the stream idles that long before every kernel except a compute kernel of zero
    /// duration, which stands for no kernel at all.
    mutating func startKernel(lane: Int, instruction i: Int, at now: SimTime, launched: Bool) throws {
        let r = lane >> 1
        let instr = instructions[i]
        if options.budget.wallSeconds != nil && (instr.kind == .mlp || instr.kind.sends)
            && routingCache[Int(ranks[r].step) * scenario.model.moeLayers + Int(instr.moeLayer)] == nil
        {
            try checkWallBudget(at: now)
        }
        if !launched && (!instr.kind.isCompute || computeWork(lane: lane, instruction: i).duration > .zero) {
            // The GPU's own gap between kernels, or the host's launch if that comes later.
            var ready = now + launchGap
            if let host { ready = max(ready, host.launchTime(rank: r, instruction: i, stepStart: hostStepStart[r])) }
            if ready > now {
                lanes[lane].phase = .launching
                lanes[lane].instruction = i
                if instr.stream == .compute { rankSteps[Int(ranks[r].step) * n + r].launchGaps += ready - now }
                queue.push(EngineEvent(lane: Int32(lane), kind: .launch, version: lanes[lane].version), at: ready)
                return
            }
        }
        let step = Int(ranks[r].step)
        assert(now >= lanes[lane].previousEnd, "rank \(r): a kernel starts at \(now) before the stream's previous one ended")
        lanes[lane].instruction = i
        lanes[lane].kernelStart = now
        lanes[lane].bytesOut = 0
        lanes[lane].bytesIn = 0
        lanes[lane].tokens = 0
        lanes[lane].wait = .zero
        lanes[lane].blocker = -1
        lanes[lane].blockerWait = .zero
        lanes[lane].lastArrival = nil
        lanes[lane].sendEnd = nil
        lanes[lane].blameReason = .none
        lanes[lane].blockerLag = .zero
        if instr.stream == .comm && commSMs > 0 { setCommResident(r, true, at: now) }
        switch instr.kind {
        case .attn0, .attn1, .shared, .dense, .mlp:
            let (work, duration) = computeWork(lane: lane, instruction: i)
            lanes[lane].tokens = Int64(instr.kind == .mlp ? work.received : (work.wholeBatch ? work.tokensTotal : work.tokens))
            startCompute(lane: lane, duration: duration, at: now)
        case .sendDispatch, .dispatch, .sendCombine, .combine:
            if instr.notifyOp >= 0 {
                // Normal mode: the count exchange among all ranks comes first.
                try exchangeWithAll(lane: lane, operation: Int32(step * opsPerStep + Int(instr.notifyOp)), phase: .notifyWait, at: now)
            } else {
                try beginSend(lane: lane, at: now)
            }
        case .recvDispatch, .recvCombine:
            lanes[lane].phase = .receiveWait
            try beginReceive(lane: lane, operation: Int32(step * opsPerStep + Int(instr.commOp)), at: now)
        case .barrier:
            // Every rank tells every rank it has arrived; the kernel ends when all have.
            try exchangeWithAll(lane: lane, operation: Int32(step * opsPerStep + Int(instr.commOp)), phase: .barrierWait, at: now)
        }
    }

    /// Sends a zero-byte message to every rank and waits for every rank's: the count
    /// exchange of a normal-mode dispatch, or a barrier.
    mutating func exchangeWithAll(lane: Int, operation op: Int32, phase: LanePhase, at now: SimTime) throws {
        let r = lane >> 1
        for d in 0..<n {
            net.post(
                Flow(source: Int32(r), destination: Int32(d), operation: op, path: paths[r * n + d], messages: 0, bytes: 0),
                dataFrom: now, controlAt: now, deliveries: &deliveries)
        }
        flowCount += n
        lanes[lane].phase = phase
        try beginReceive(lane: lane, operation: op, at: now)
        try drainDeliveries()
    }

    /// The largest (source, slot) pair of the lane's rank in the current kernel's micro-batch.
    func mbRoutingMaxSourceSlot(lane: Int, routing: LayerRouting) -> Int32 {
        let instr = instructions[lanes[lane].instruction]
        return routing.microBatches[Int(instr.microBatch.rawValue)].maxSourceSlot[lane >> 1]
    }

    /// The rank's pairs (row or column of the routing) that the current SEND serves.
    func sendCounts(lane: Int, routing: LayerRouting) -> (counts: [Int32], dispatch: Bool) {
        let instr = instructions[lanes[lane].instruction]
        let mbRouting = routing.microBatches[Int(instr.microBatch.rawValue)]
        return (normalMode ? mbRouting.uniquePairCounts : mbRouting.pairCounts, instr.kind.isDispatchSide)
    }

    /// Starts the SEND part: posts one flow to every rank (zero-message flows included:
    /// their count or flag messages are always sent). Data may start moving now; the
    /// control messages leave when the SEND part ends, after all the data was issued.
    mutating func beginSend(lane: Int, at now: SimTime) throws {
        let r = lane >> 1
        let instr = instructions[lanes[lane].instruction]
        let step = Int(ranks[r].step)
        let key = step * scenario.model.moeLayers + Int(instr.moeLayer)
        let routing = routingFor(step: step, moeLayer: Int(instr.moeLayer)).routing
        let (counts, dispatch) = sendCounts(lane: lane, routing: routing)
        let bytesPerMessage = dispatch ? dispatchBytes : combineBytes
        var messages: Int64 = 0
        var peerBytes: Int64 = 0
        var selfBytes: Int64 = 0
        for d in 0..<n {
            let count = Int64(dispatch ? counts[r * n + d] : counts[d * n + r])
            messages += count
            // NVLink peers and the rank itself are written by the kernel's own SM stores.
            if Net.movesNVLinkInSendKernel && paths[r * n + d] == .nvlink {
                if d == r { selfBytes += count * bytesPerMessage } else { peerBytes += count * bytesPerMessage }
            }
        }
        // A low-latency combine SEND gives each (peer, local expert) pair one warp group.
        let pairBytes = dispatch || !pairLimited ? 0 : Int64(mbRoutingMaxSourceSlot(lane: lane, routing: routing)) * bytesPerMessage
        let duration = cost.sendDuration(
            dispatch: dispatch, rank: RankID(r), messages: Int(messages), stores: net.sendStoreTime(peerBytes: peerBytes, selfBytes: selfBytes),
            pairBytes: pairBytes)
        var end = now + duration
        if instr.releasedByDownGEMM >= 0 { end = max(end, overlappedSendEnd(rank: r, instr: instr, duration: duration, routing: routing, at: now)) }
        let operation = Int32(step * opsPerStep + Int(instr.commOp))
        ownSends[r * Self.ringSize + Int(operation) % Self.ringSize] = (operation, now, end)
        for d in 0..<n {
            let count = dispatch ? counts[r * n + d] : counts[d * n + r]
            net.post(
                Flow(
                    source: Int32(r), destination: Int32(d), operation: operation, path: paths[r * n + d],
                    messages: count, bytes: Int64(count) * bytesPerMessage),
                dataFrom: now, controlAt: end, deliveries: &deliveries)
        }
        flowCount += n
        messageCount += messages
        lanes[lane].bytesOut = messages * bytesPerMessage
        lanes[lane].tokens = messages
        lanes[lane].phase = .send
        if !dispatch {
            routingCache[key]!.remainingCombineSends -= 1
            if routingCache[key]!.remainingCombineSends == 0 { routingCache[key] = nil }
        }
        queue.push(EngineEvent(lane: Int32(lane), kind: .sendDone, version: lanes[lane].version), at: end)
        try drainDeliveries()
    }

    /// The SEND part is over: end the kernel or, when fused, go on to the RECV part.
    mutating func sendDone(_ lane: Int, at now: SimTime) throws {
        let instr = instructions[lanes[lane].instruction]
        lanes[lane].sendEnd = now
        if instr.kind.receives {
            lanes[lane].phase = .receiveWait
            try beginReceive(lane: lane, operation: Int32(Int(ranks[lane >> 1].step) * opsPerStep + Int(instr.commOp)), at: now)
        } else {
            try finishKernel(lane, at: now)
        }
    }

    /// Ends the lane's kernel at `now`, books it, and starts whatever can start next.
    mutating func finishKernel(_ lane: Int, at now: SimTime) throws {
        let r = lane >> 1
        let i = lanes[lane].instruction
        let instr = instructions[i]
        let state = lanes[lane]
        let idx = Int(ranks[r].step) * n + r
        let duration = now - state.kernelStart
        kernelCount += 1
        rankSteps[idx].busy += duration - state.wait
        switch instr.kind {
        case .attn0, .attn1: rankSteps[idx].attention += duration
        case .shared: rankSteps[idx].shared += duration
        case .dense: rankSteps[idx].dense += duration
        case .mlp: rankSteps[idx].gemm += duration
        case .sendDispatch, .recvDispatch, .dispatch:
            rankSteps[idx].dispatch += duration
            rankSteps[idx].dispatchWait += state.wait
        case .sendCombine, .recvCombine, .combine:
            rankSteps[idx].combine += duration
            rankSteps[idx].combineWait += state.wait
        case .barrier:
            rankSteps[idx].barrier += duration
        }
        if instr.kind.isCompute && instr.stream == .compute { rankSteps[idx].computeOnComputeStream += duration }
        if options.timeline == .full || observer != nil {
            let record =
                KernelRecord(
                    rank: Int32(r), step: ranks[r].step, layer: instr.layer, microBatch: instr.microBatch, kind: instr.kind,
                    stream: instr.stream, start: state.kernelStart, end: now, wait: state.wait, bytesOut: state.bytesOut,
                    bytesIn: state.bytesIn, tokens: state.tokens, blocker: state.blocker, lastArrival: state.lastArrival,
                    sendEnd: state.sendEnd, blameReason: state.blameReason, blockerLag: state.blockerLag)
            if options.timeline == .full { kernelsByRank[r].append(record) }
            observer?.kernelEnded(record)
        }
        completedInStep[r * instructions.count + i] = ranks[r].step + 1
        lanes[lane].previousEnd = now
        lanes[lane].phase = .idle
        lanes[lane].instruction = -1
        lanes[lane].pc += 1
        if instr.stream == .comm && commSMs > 0 { setCommResident(r, false, at: now) }
        try tryStart(lane: lane, at: now)
        try tryStart(lane: lane ^ 1, at: now)
        let stepDone = (0..<2).allSatisfy { s in
            lanes[r * 2 + s].phase == .idle && lanes[r * 2 + s].pc == program.streams[s].count
        }
        if stepDone {
            rankSteps[idx].end = now
            let step = Int(ranks[r].step)
            source.rankFinished(rank: RankID(r), step: step, at: now)
            observer?.rankStepEnded(rankSteps[idx])
            plans[step]!.ranksDone += 1
            if plans[step]!.ranksDone == n { plans[step] = nil }
            ranks[r].step += 1
            if Int(ranks[r].step) == scenario.steps {
                ranks[r].done = true
            } else {
                try startStep(r, at: now)
            }
        }
    }

    // MARK: Single-batch overlap

    /// The down projection of the `MLP` on `lane` has started: its combine SEND may start.
    mutating func releaseDownGEMM(_ lane: Int, at now: SimTime) throws {
        let r = lane >> 1
        lanes[lane].releaseWorkLeft = -1
        releasedInStep[r * instructions.count + lanes[lane].instruction] = ranks[r].step + 1
        try tryStart(lane: lane ^ 1, at: now)
    }

    /// When a combine SEND that overlaps its `MLP`'s down projection can end: after the GEMM's
    /// last 64-row block is done and its share of the SEND (`duration` over the blocks) sent.
    /// The GEMM's end is known from now on: the SEND holds the comm SMs until then.
    func overlappedSendEnd(rank r: Int, instr: Instruction, duration: SimTime, routing: LayerRouting, at now: SimTime) -> SimTime {
        let mlpLane = r * 2 + Int(StreamKind.compute.rawValue)
        var gemmEnd = now
        if lanes[mlpLane].phase == .compute && lanes[mlpLane].instruction == Int(instr.releasedByDownGEMM) {
            let sms = lanes[mlpLane].sms
            let left = max(0, lanes[mlpLane].workLeft - (now - lanes[mlpLane].lastUpdate).times(sms).picos)
            gemmEnd = now + SimTime(picos: left / sms + (left % sms == 0 ? 0 : 1))
        }
        let load = routing.microBatches[Int(instr.microBatch.rawValue)].expertLoad
        let blocks = max(1, localExperts[r].reduce(0) { $0 + (Int(load[$1]) + 63) / 64 })
        return gemmEnd + SimTime(picos: duration.picos / Int64(blocks))
    }

    // MARK: Routing

    /// The routing of (step, MoE layer), computed on first use and kept until every rank
    /// has sent its combine for every micro-batch of it.
    mutating func routingFor(step: Int, moeLayer: Int) -> CachedRouting {
        let key = step * scenario.model.moeLayers + moeLayer
        if let cached = routingCache[key] { return cached }
        let fresh = CachedRouting(
            routing: router.route(plan: plans[step]!.plan, layer: moeLayer, microBatches: microBatches, uniquePairs: normalMode, pairMaxima: pairLimited),
            remainingCombineSends: n * microBatches)
        routingCache[key] = fresh
        return fresh
    }
}
