import EventCore

/// What the future-event list holds: a lane's current kernel reaching a phase boundary.
struct EngineEvent {
    enum Kind: UInt8 {
        /// The SEND part of the lane's kernel is done: post its flows.
        case sendDone
        /// The lane's kernel ends.
        case kernelEnd
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
    /// The last flow's particulars, for blame: its bytes, path, SEND start and end.
    var blockerBytes: Int64 = 0
    var blockerPath = Path.nvlink
    var blockerStarted: SimTime = .zero
    var blockerPosted: SimTime = .zero
    /// The lane spinning on this slot, or -1.
    var waitingLane: Int32 = -1
    var consumed = true
    var recvStart: SimTime = .zero
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
struct Engine<Net: NetworkModel> {
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
    let dispatchBytes: Int64
    let combineBytes: Int64
    let totalSMs: Int64
    let commSMs: Int64
    let normalMode: Bool
    /// `paths[s * N + d]`: the transport from `s` to `d`.
    let paths: [Path]

    var net: Net
    var queue: EventQueue<EngineEvent>
    var deliveries: [Delivery] = []
    var ranks: [RankState]
    var lanes: [LaneState]
    /// `completedInStep[rank * P + instruction] == step + 1` once it ran in that step.
    var completedInStep: [Int32]
    var slots: [RecvSlot]
    /// Each rank's own SEND of each operation in flight (ring like `slots`): start and end.
    var ownSends: [(operation: Int32, start: SimTime, end: SimTime)]
    var routingCache: [Int: CachedRouting] = [:]
    var rankSteps: [RankStepResult]
    var kernelsByRank: [[KernelRecord]]
    var flows: [FlowRecord] = []
    var blockedWait: [SimTime]
    var kernelCount = 0
    var flowCount = 0
    var messageCount: Int64 = 0
    var eventCount = 0

    init(scenario: Scenario, network: Net, options: SimulationOptions) throws {
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
        dispatchBytes = scenario.model.dispatchMessageBytes
        combineBytes = scenario.model.combineMessageBytes
        totalSMs = Int64(scenario.cluster.smsPerGPU)
        commSMs = Int64(program.commSMs)
        net = network
        let cluster = scenario.cluster
        let config = scenario.network
        let rankCount = n
        paths = (0..<(n * n)).map { config.path(from: $0 / rankCount, to: $0 % rankCount, in: cluster) }
        queue = EventQueue(reservingCapacity: 4 * n)
        ranks = Array(repeating: RankState(), count: n)
        lanes = Array(repeating: LaneState(), count: 2 * n)
        completedInStep = Array(repeating: 0, count: n * program.instructions.count)
        slots = Array(repeating: RecvSlot(), count: n * Self.ringSize)
        ownSends = Array(repeating: (-1, .zero, .zero), count: n * Self.ringSize)
        rankSteps = (0..<scenario.steps).flatMap { s in (0..<rankCount).map { RankStepResult(rank: Int32($0), step: Int32(s)) } }
        kernelsByRank = Array(repeating: [], count: options.timeline == .full ? n : 0)
        blockedWait = Array(repeating: .zero, count: n)
    }

    mutating func run() throws -> RunResult {
        for r in 0..<n { try startStep(r, at: .zero) }
        while true {
            if let tn = net.nextEventTime(), queue.nextTime.map({ tn <= $0 }) ?? true {
                net.advance(to: tn, deliveries: &deliveries)
                try drainDeliveries()
                continue
            }
            guard let (now, event) = queue.pop() else { break }
            let lane = Int(event.lane)
            guard event.version == lanes[lane].version else { continue }
            eventCount += 1
            switch event.kind {
            case .sendDone: try sendDone(lane, at: now)
            case .kernelEnd: try finishKernel(lane, at: now)
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
            rankSteps: rankSteps, kernels: kernelsByRank.flatMap { $0 }, flows: flows,
            kernelCount: kernelCount, flowCount: flowCount, messageCount: messageCount, eventCount: eventCount + net.eventCount,
            blockedWait: blockedWait)
    }

    // MARK: Steps and lanes

    mutating func startStep(_ r: Int, at now: SimTime) throws {
        let step = Int(ranks[r].step)
        rankSteps[step * n + r].start = now
        rankSteps[step * n + r].tokens = scenario.workload.tokens(step: step, rank: r)
        for s in 0..<2 { lanes[r * 2 + s].pc = 0 }
        for s in 0..<2 { try tryStart(lane: r * 2 + s, at: now) }
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
        for dep in instructions[i].crossStreamDependencies where completedInStep[base + Int(dep)] != stepMark { return }
        try startKernel(lane: lane, instruction: i, at: now)
    }

    mutating func startKernel(lane: Int, instruction i: Int, at now: SimTime) throws {
        let r = lane >> 1
        let instr = instructions[i]
        let step = Int(ranks[r].step)
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
        let mb = instr.microBatch
        let workload = scenario.workload
        switch instr.kind {
        case .attn0, .attn1, .shared, .dense:
            var work = ComputeWork()
            work.wholeBatch = instr.moeLayer < 0
            work.tokensTotal = workload.tokens(step: step, rank: r)
            work.tokensA = workload.tokenRange(rank: r, step: step, microBatch: .a, of: microBatches).count
            work.tokens = workload.tokenRange(rank: r, step: step, microBatch: mb, of: microBatches).count
            work.kvLength = workload.kvLength[r]
            lanes[lane].tokens = Int64(work.wholeBatch ? work.tokensTotal : work.tokens)
            startCompute(lane: lane, duration: cost.computeDuration(instr.kind, rank: r, microBatch: mb, microBatches: microBatches, work: work), at: now)
        case .mlp:
            let routing = routingFor(step: step, moeLayer: Int(instr.moeLayer)).routing
            var work = ComputeWork()
            for m in 0..<microBatches {
                var received = 0
                for e in localExperts[r] { received += Int(routing.microBatches[m].expertLoad[e]) }
                if m == 0 { work.receivedA = received }
                if m == Int(mb.rawValue) { work.received = received }
                work.receivedTotal += received
            }
            work.expertTokens = localExperts[r].map { routing.microBatches[Int(mb.rawValue)].expertLoad[$0] }
            lanes[lane].tokens = Int64(work.received)
            startCompute(lane: lane, duration: cost.computeDuration(.mlp, rank: r, microBatch: mb, microBatches: microBatches, work: work), at: now)
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
        let (counts, dispatch) = sendCounts(lane: lane, routing: routingFor(step: step, moeLayer: Int(instr.moeLayer)).routing)
        let bytesPerMessage = dispatch ? dispatchBytes : combineBytes
        var messages: Int64 = 0
        var smCopiedBytes: Int64 = 0
        for d in 0..<n {
            let count = Int64(dispatch ? counts[r * n + d] : counts[d * n + r])
            messages += count
            if Net.movesNVLinkInSendKernel && paths[r * n + d] == .nvlink { smCopiedBytes += count * bytesPerMessage }
        }
        var duration = cost.sendDuration(dispatch: dispatch, rank: r, messages: Int(messages))
        if smCopiedBytes > 0 {
            // NVLink peers (and the rank itself) are written by the kernel's own SM stores.
            duration += SimTime.transfer(bytes: smCopiedBytes, gigabytesPerSecond: scenario.network.nvlink.bandwidthGBps)
        }
        let end = now + duration
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
        if options.timeline == .full {
            kernelsByRank[r].append(
                KernelRecord(
                    rank: Int32(r), step: ranks[r].step, layer: instr.layer, microBatch: instr.microBatch, kind: instr.kind,
                    stream: instr.stream, start: state.kernelStart, end: now, wait: state.wait, bytesOut: state.bytesOut,
                    bytesIn: state.bytesIn, tokens: state.tokens, blocker: state.blocker, lastArrival: state.lastArrival,
                    sendEnd: state.sendEnd, blameReason: state.blameReason, blockerLag: state.blockerLag))
        }
        completedInStep[r * instructions.count + i] = ranks[r].step + 1
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
            ranks[r].step += 1
            if Int(ranks[r].step) == scenario.steps {
                ranks[r].done = true
            } else {
                try startStep(r, at: now)
            }
        }
    }

    // MARK: Compute and SM sharing

    /// Starts a compute kernel of `duration` at full SMs: it needs `duration x S` SM-ps of
    /// work and progresses at the SMs it has (all, or all but the comm kernel's).
    mutating func startCompute(lane: Int, duration: SimTime, at now: SimTime) {
        lanes[lane].phase = .compute
        lanes[lane].workLeft = duration.picos * totalSMs
        lanes[lane].lastUpdate = now
        lanes[lane].sms = availableSMs(rank: lane >> 1, stream: lane & 1)
        scheduleComputeEnd(lane: lane, at: now)
    }

    func availableSMs(rank r: Int, stream: Int) -> Int64 {
        stream == StreamKind.compute.rawValue.asInt && ranks[r].commResident ? totalSMs - commSMs : totalSMs
    }

    mutating func scheduleComputeEnd(lane: Int, at now: SimTime) {
        let sms = lanes[lane].sms
        let left = lanes[lane].workLeft
        let end = now + SimTime(picos: (left + sms - 1) / sms)
        queue.push(EngineEvent(lane: Int32(lane), kind: .kernelEnd, version: lanes[lane].version), at: end)
    }

    /// A comm-stream kernel starts or ends: the compute kernel running beside it changes speed.
    mutating func setCommResident(_ r: Int, _ resident: Bool, at now: SimTime) {
        ranks[r].commResident = resident
        let lane = r * 2 + Int(StreamKind.compute.rawValue)
        guard lanes[lane].phase == .compute else { return }
        let progressed = (now - lanes[lane].lastUpdate).picos * lanes[lane].sms
        lanes[lane].workLeft = max(0, lanes[lane].workLeft - progressed)
        lanes[lane].lastUpdate = now
        lanes[lane].sms = availableSMs(rank: r, stream: Int(StreamKind.compute.rawValue))
        lanes[lane].version &+= 1
        scheduleComputeEnd(lane: lane, at: now)
    }

    // MARK: Receiving

    /// The slot of `operation` at rank `r`, claimed for it if the slot's previous
    /// operation has been consumed; a slot still holding unread data is an overrun.
    mutating func slotIndex(rank r: Int, operation: Int32) throws -> Int {
        let i = r * Self.ringSize + Int(operation) % Self.ringSize
        if slots[i].operation != operation {
            guard slots[i].consumed else {
                throw SimulationError(
                    code: .bufferOverrun, message: "rank \(r) received operation \(operation) while operation \(slots[i].operation) was unread")
            }
            slots[i] = RecvSlot(operation: operation, consumed: false)
        }
        return i
    }

    /// The lane begins waiting for `operation` at `now`: it goes on at
    /// `max(now, last arrival)`, the time in between being wait.
    mutating func beginReceive(lane: Int, operation: Int32, at now: SimTime) throws {
        let i = try slotIndex(rank: lane >> 1, operation: operation)
        slots[i].recvStart = now
        slots[i].waitingLane = Int32(lane)
        if Int(slots[i].arrived) == n { try completeReceive(slot: i) }
    }

    /// Every flow of the slot has arrived and its lane is waiting: the lane goes on.
    mutating func completeReceive(slot i: Int) throws {
        let lane = Int(slots[i].waitingLane)
        let r = lane >> 1
        let slot = slots[i]
        let ready = max(slot.recvStart, slot.lastArrival)
        let wait = ready - slot.recvStart
        slots[i].waitingLane = -1
        slots[i].consumed = true
        lanes[lane].wait += wait
        lanes[lane].lastArrival = slot.lastArrival
        if wait > .zero {
            blockedWait[Int(slot.blocker)] += wait
            if wait > lanes[lane].blockerWait {
                lanes[lane].blocker = slot.blocker
                lanes[lane].blockerWait = wait
                (lanes[lane].blameReason, lanes[lane].blockerLag) = blame(slot, receiver: r, wait: wait)
            }
        }
        if lanes[lane].phase == .notifyWait {
            try beginSend(lane: lane, at: ready)
            return
        }
        if lanes[lane].phase == .barrierWait {
            queue.push(EngineEvent(lane: Int32(lane), kind: .kernelEnd, version: lanes[lane].version), at: ready)
            return
        }
        let instr = instructions[lanes[lane].instruction]
        let dispatch = instr.kind.isDispatchSide
        let workBytes: Int64
        if dispatch || normalMode {
            workBytes = slot.bytesIn
            lanes[lane].tokens = slot.messagesIn
        } else {
            // The low-latency combine RECV reduces T * top_k rows of 2H bytes.
            let tokens = scenario.workload.tokenRange(rank: r, step: Int(ranks[r].step), microBatch: instr.microBatch, of: microBatches).count
            let rows = Int64(tokens * scenario.model.topK)
            workBytes = rows * combineBytes
            lanes[lane].tokens = rows
        }
        lanes[lane].bytesIn = slot.bytesIn
        lanes[lane].phase = .copy
        let end = ready + cost.recvDuration(dispatch: dispatch, rank: r, bytes: workBytes)
        queue.push(EngineEvent(lane: Int32(lane), kind: .kernelEnd, version: lanes[lane].version), at: end)
    }

    mutating func drainDeliveries() throws {
        guard !deliveries.isEmpty else { return }
        var k = 0
        // Completing a receive may post more flows (a normal-mode send); keep draining.
        while k < deliveries.count {
            try deliver(deliveries[k])
            k += 1
        }
        deliveries.removeAll(keepingCapacity: true)
    }

    /// A flow's last control message reached its destination.
    mutating func deliver(_ delivery: Delivery) throws {
        let flow = delivery.flow
        let d = Int(flow.destination)
        let i = try slotIndex(rank: d, operation: flow.operation)
        slots[i].arrived += 1
        slots[i].bytesIn += flow.bytes
        slots[i].messagesIn += Int64(flow.messages)
        if slots[i].blocker < 0 || delivery.arrival > slots[i].lastArrival
            || (delivery.arrival == slots[i].lastArrival && flow.source < slots[i].blocker)
        {
            slots[i].lastArrival = delivery.arrival
            slots[i].blocker = flow.source
            slots[i].blockerBytes = flow.bytes
            slots[i].blockerPath = flow.path
            slots[i].blockerStarted = delivery.started
            slots[i].blockerPosted = delivery.posted
        }
        if options.recordFlows { flows.append(FlowRecord(flow: flow, posted: delivery.posted, arrival: delivery.arrival)) }
        if Int(slots[i].arrived) == n && slots[i].waitingLane >= 0 { try completeReceive(slot: i) }
    }

    // MARK: Blame

    /// Why the slot's last flow came late, and how much of `wait` its sender caused.
    ///
    /// Against the receiver's own SEND of the operation: *started late* is how much later
    /// the blocker's SEND began; *sent more bytes* is how much longer it lasted plus how much
    /// longer its flow took to transfer than the receiver's average incoming flow; *busy
    /// port* is how much longer the flow took than it would have alone on its links. The
    /// sender caused the first two (at most the wait); the network the rest. The reason is
    /// the largest of the three, or *in flight* when none is positive (plain latency and
    /// transfer time, which every flow has).
    func blame(_ slot: RecvSlot, receiver r: Int, wait: SimTime) -> (BlameReason, SimTime) {
        let own = ownSends[r * Self.ringSize + Int(slot.operation) % Self.ringSize]
        let config = scenario.network
        let link = config.link(slot.blockerPath)
        let transfer = SimTime.transfer(bytes: slot.blockerBytes, gigabytesPerSecond: link.bandwidthGBps)
        // When the flow would have arrived alone on its links.
        var alone: SimTime
        if Net.movesNVLinkInSendKernel && slot.blockerPath == .nvlink {
            alone = slot.blockerPosted + link.latency
        } else if config.rdmaDataDuringSend && slot.blockerPath == .rdma {
            var done = slot.blockerStarted + transfer
            if config.fenceControlMessages && slot.blockerBytes > 0 { done += link.latency + link.latency }
            alone = max(slot.blockerPosted, done) + link.latency
        } else {
            alone = slot.blockerPosted + link.latency + transfer
            if config.fenceControlMessages && slot.blockerPath == .rdma && slot.blockerBytes > 0 { alone += link.latency + link.latency }
        }
        let busyPort = max(.zero, slot.lastArrival - alone)
        let meanTransfer = SimTime.transfer(bytes: slot.bytesIn / Int64(max(n, 1)), gigabytesPerSecond: link.bandwidthGBps)
        let moreBytes = Net.movesNVLinkInSendKernel && slot.blockerPath == .nvlink ? .zero : max(.zero, transfer - meanTransfer)
        var startedLate = SimTime.zero
        var sentMore = moreBytes
        if own.operation == slot.operation {
            startedLate = max(.zero, slot.blockerStarted - own.start)
            sentMore += max(.zero, (slot.blockerPosted - slot.blockerStarted) - (own.end - own.start))
        } else {
            // A count exchange or barrier: the blocker simply got there last.
            startedLate = max(.zero, slot.blockerStarted - slot.recvStart)
        }
        let byRank = min(wait, startedLate + sentMore)
        let reason: BlameReason
        if startedLate == .zero && sentMore == .zero && busyPort == .zero {
            reason = .inFlight
        } else if startedLate >= sentMore && startedLate >= busyPort {
            reason = .startedLate
        } else {
            reason = sentMore >= busyPort ? .sentMore : .busyPort
        }
        return (reason, byRank)
    }

    // MARK: Routing

    /// The routing of (step, MoE layer), computed on first use and kept until every rank
    /// has sent its combine for every micro-batch of it.
    mutating func routingFor(step: Int, moeLayer: Int) -> CachedRouting {
        let key = step * scenario.model.moeLayers + moeLayer
        if let cached = routingCache[key] { return cached }
        let fresh = CachedRouting(
            routing: router.route(step: step, layer: moeLayer, microBatches: microBatches, uniquePairs: normalMode),
            remainingCombineSends: n * microBatches)
        routingCache[key] = fresh
        return fresh
    }
}

extension UInt8 {
    var asInt: Int { Int(self) }
}
