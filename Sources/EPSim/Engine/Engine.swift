import EventCore

/// What the future-event list holds: a rank's current kernel reaching a phase boundary.
struct EngineEvent {
    enum Kind: UInt8 {
        /// The SEND part of the current kernel is done: post its flows.
        case sendDone
        /// The current kernel ends.
        case kernelEnd
    }
    var rank: Int32
    var kind: Kind
}

/// Per-rank execution state: where the rank is in its program and what its current kernel did.
struct RankState {
    var step: Int32 = 0
    var pc: Int = 0
    var done = false
    var kernelStart: SimTime = .zero
    var bytesOut: Int64 = 0
    var bytesIn: Int64 = 0
    var tokens: Int64 = 0
    var wait: SimTime = .zero
    var blocker: Int32 = -1
    var lastArrival: SimTime? = nil
}

/// Arrivals of one low-latency operation at one receiver: DeepEP's per-(source, expert)
/// count slots (dispatch) or per-expert flags (combine), aggregated per source rank.
struct RecvSlot {
    var operation: Int32 = -1
    var arrived: Int32 = 0
    var bytesIn: Int64 = 0
    var messagesIn: Int64 = 0
    var lastArrival: SimTime = .zero
    var blocker: Int32 = -1
    var waiting = false
    var consumed = true
    var recvStart: SimTime = .zero
}

/// A layer's routing kept until every rank has sent its combine for it.
struct CachedRouting {
    var routing: LayerRouting
    var remainingCombineSends: Int
}

/// The discrete-event engine: every kernel is an event gated on its stream and, for RECV
/// kernels, on the arrival of every flow it waits for; there is no barrier anywhere.
///
/// Generic over the network model so that the model is specialised into the loop.
struct Engine<Net: NetworkModel> {
    static var ringSize: Int { 4 }

    let scenario: Scenario
    let options: SimulationOptions
    let n: Int
    let program: [Instruction]
    let opsPerStep: Int
    let microBatches: Int
    let cost: CostModel
    let router: RoutingGenerator
    let localExperts: [[Int]]
    let dispatchBytes: Int64
    let combineBytes: Int64

    var net: Net
    var queue: EventQueue<EngineEvent>
    var deliveries: [Delivery] = []
    var ranks: [RankState]
    var slots: [RecvSlot]
    var routingCache: [Int: CachedRouting] = [:]
    var rankSteps: [RankStepResult]
    var kernelsByRank: [[KernelRecord]]
    var flows: [FlowRecord] = []
    var blockedWait: [SimTime]
    var kernelCount = 0
    var flowCount = 0
    var messageCount: Int64 = 0
    var eventCount = 0

    init(scenario: Scenario, network: Net, options: SimulationOptions) {
        self.scenario = scenario
        self.options = options
        n = scenario.cluster.ranks
        let prog = Program(preset: scenario.schedule, denseLayers: scenario.model.denseLayers, moeLayers: scenario.model.moeLayers)
        program = prog.instructions
        opsPerStep = prog.commOpsPerStep
        microBatches = prog.microBatches
        cost = CostModel(costs: scenario.costs, model: scenario.model)
        router = RoutingGenerator(workload: scenario.workload, model: scenario.model)
        var local = [[Int]](repeating: [], count: n)
        for (e, r) in scenario.model.placement.enumerated() { local[Int(r)].append(e) }
        localExperts = local
        dispatchBytes = scenario.model.dispatchMessageBytes
        combineBytes = scenario.model.combineMessageBytes
        net = network
        queue = EventQueue(reservingCapacity: 2 * n)
        ranks = Array(repeating: RankState(), count: n)
        slots = Array(repeating: RecvSlot(), count: n * Self.ringSize)
        let rankCount = n
        rankSteps = (0..<scenario.steps).flatMap { s in (0..<rankCount).map { RankStepResult(rank: Int32($0), step: Int32(s)) } }
        kernelsByRank = Array(repeating: [], count: options.timeline == .full ? n : 0)
        blockedWait = Array(repeating: .zero, count: n)
    }

    mutating func run() throws -> RunResult {
        for r in 0..<n { try startKernel(r, at: .zero) }
        while true {
            if let tn = net.nextEventTime, queue.nextTime.map({ tn <= $0 }) ?? true {
                net.advance(to: tn, deliveries: &deliveries)
                try drainDeliveries()
                continue
            }
            guard let (now, event) = queue.pop() else { break }
            eventCount += 1
            let r = Int(event.rank)
            switch event.kind {
            case .sendDone: try sendDone(r, at: now)
            case .kernelEnd: try finishKernel(r, at: now)
            }
        }
        if let stuck = ranks.indices.first(where: { !ranks[$0].done }) {
            let instr = program[ranks[stuck].pc]
            throw SimulationError(
                code: .deadlock,
                message: "rank \(stuck) never finished \(instr.kind) of layer \(instr.layer), micro-batch \(instr.microBatch), step \(ranks[stuck].step)")
        }
        return RunResult(
            scenarioName: scenario.name, schedule: scenario.schedule, ranks: n, steps: scenario.steps,
            rankSteps: rankSteps, kernels: kernelsByRank.flatMap { $0 }, flows: flows,
            kernelCount: kernelCount, flowCount: flowCount, messageCount: messageCount, eventCount: eventCount,
            blockedWait: blockedWait)
    }

    // MARK: Kernels

    /// Starts the kernel at the rank's program counter at `now` (its stream just became free).
    mutating func startKernel(_ r: Int, at now: SimTime) throws {
        let instr = program[ranks[r].pc]
        let step = Int(ranks[r].step)
        if ranks[r].pc == 0 { rankSteps[step * n + r].start = now }
        ranks[r].kernelStart = now
        ranks[r].bytesOut = 0
        ranks[r].bytesIn = 0
        ranks[r].tokens = 0
        ranks[r].wait = .zero
        ranks[r].blocker = -1
        ranks[r].lastArrival = nil
        let mb = instr.microBatch
        switch instr.kind {
        case .attn0, .attn1, .shared, .dense:
            let range = RoutingGenerator.tokenRange(tokens: scenario.workload.tokensPerRank[r], microBatch: mb, of: microBatches)
            let total = scenario.workload.tokensPerRank[r]
            let aCount = RoutingGenerator.tokenRange(tokens: total, microBatch: .a, of: microBatches).count
            ranks[r].tokens = Int64(instr.kind == .dense ? total : range.count)
            let d = cost.computeDuration(
                instr.kind, rank: r, microBatch: mb, microBatches: microBatches,
                ownTokensA: aCount, ownTokens: total, receivedA: 0, received: 0)
            queue.push(EngineEvent(rank: Int32(r), kind: .kernelEnd), at: now + d)
        case .mlp:
            let routing = routingFor(step: step, moeLayer: Int(instr.moeLayer)).routing
            var received = [Int](repeating: 0, count: microBatches)
            for m in 0..<microBatches {
                for e in localExperts[r] { received[m] += Int(routing.microBatches[m].expertLoad[e]) }
            }
            ranks[r].tokens = Int64(received[Int(mb.rawValue)])
            let d = cost.computeDuration(
                .mlp, rank: r, microBatch: mb, microBatches: microBatches,
                ownTokensA: 0, ownTokens: 0, receivedA: received[0], received: received.reduce(0, +))
            queue.push(EngineEvent(rank: Int32(r), kind: .kernelEnd), at: now + d)
        case .sendDispatch, .dispatch, .sendCombine, .combine:
            let dispatch = instr.kind.isDispatchSide
            let pairs = routingFor(step: step, moeLayer: Int(instr.moeLayer)).routing.microBatches[Int(mb.rawValue)].pairCounts
            var messages = 0
            if dispatch {
                for d in 0..<n { messages += Int(pairs[r * n + d]) }
            } else {
                for s in 0..<n { messages += Int(pairs[s * n + r]) }
            }
            let d = cost.sendDuration(dispatch: dispatch, rank: r, messages: messages)
            queue.push(EngineEvent(rank: Int32(r), kind: .sendDone), at: now + d)
        case .recvDispatch, .recvCombine:
            try beginReceive(r, at: now)
        }
    }

    /// The SEND part is over: post one flow to every rank (zero-message flows included:
    /// their count or flag messages are always sent), then end the kernel or, when fused,
    /// go on to the RECV part.
    mutating func sendDone(_ r: Int, at now: SimTime) throws {
        let instr = program[ranks[r].pc]
        let step = Int(ranks[r].step)
        let key = step * scenario.model.moeLayers + Int(instr.moeLayer)
        let pairs = routingCache[key]!.routing.microBatches[Int(instr.microBatch.rawValue)].pairCounts
        let dispatch = instr.kind.isDispatchSide
        let operation = Int32(step * opsPerStep + Int(instr.commOp))
        let bytesPerMessage = dispatch ? dispatchBytes : combineBytes
        var sentMessages: Int64 = 0
        var sentBytes: Int64 = 0
        for d in 0..<n {
            let count = dispatch ? pairs[r * n + d] : pairs[d * n + r]
            let bytes = Int64(count) * bytesPerMessage
            sentMessages += Int64(count)
            sentBytes += bytes
            let path = scenario.network.path(from: r, to: d, in: scenario.cluster)
            net.post(
                Flow(source: Int32(r), destination: Int32(d), operation: operation, path: path, messages: count, bytes: bytes),
                at: now, deliveries: &deliveries)
        }
        flowCount += n
        messageCount += sentMessages
        ranks[r].bytesOut = sentBytes
        ranks[r].tokens = sentMessages
        if !dispatch {
            routingCache[key]!.remainingCombineSends -= 1
            if routingCache[key]!.remainingCombineSends == 0 { routingCache[key] = nil }
        }
        try drainDeliveries()
        if instr.kind.receives {
            try beginReceive(r, at: now)
        } else {
            try finishKernel(r, at: now)
        }
    }

    /// Ends the current kernel at `now`, books it, and starts the next one (or the next step).
    mutating func finishKernel(_ r: Int, at now: SimTime) throws {
        let instr = program[ranks[r].pc]
        let state = ranks[r]
        let idx = Int(state.step) * n + r
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
        }
        if state.blocker >= 0 { blockedWait[Int(state.blocker)] += state.wait }
        if options.timeline == .full {
            kernelsByRank[r].append(
                KernelRecord(
                    rank: Int32(r), step: state.step, layer: instr.layer, microBatch: instr.microBatch, kind: instr.kind,
                    stream: instr.stream, start: state.kernelStart, end: now, wait: state.wait, bytesOut: state.bytesOut,
                    bytesIn: state.bytesIn, tokens: state.tokens, blocker: state.blocker, lastArrival: state.lastArrival))
        }
        ranks[r].pc += 1
        if ranks[r].pc == program.count {
            rankSteps[idx].end = now
            ranks[r].step += 1
            ranks[r].pc = 0
            if Int(ranks[r].step) == scenario.steps {
                ranks[r].done = true
                return
            }
        }
        try startKernel(r, at: now)
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

    /// The RECV (part) of the current kernel begins at `now`: it ends at
    /// `max(now, last arrival) + copy`, the time before the last arrival being wait.
    mutating func beginReceive(_ r: Int, at now: SimTime) throws {
        let instr = program[ranks[r].pc]
        let operation = Int32(Int(ranks[r].step) * opsPerStep + Int(instr.commOp))
        let i = try slotIndex(rank: r, operation: operation)
        slots[i].recvStart = now
        if Int(slots[i].arrived) == n {
            completeReceive(r, slot: i)
        } else {
            slots[i].waiting = true
        }
    }

    /// All flows of the slot have arrived and the RECV has begun: schedule its end.
    mutating func completeReceive(_ r: Int, slot i: Int) {
        let instr = program[ranks[r].pc]
        let slot = slots[i]
        let dispatch = instr.kind.isDispatchSide
        let ready = max(slot.recvStart, slot.lastArrival)
        let workBytes: Int64
        if dispatch {
            workBytes = slot.bytesIn
            ranks[r].tokens = slot.messagesIn
        } else {
            // The combine RECV reduces T * top_k rows of 2H bytes.
            let tokens = RoutingGenerator.tokenRange(tokens: scenario.workload.tokensPerRank[r], microBatch: instr.microBatch, of: microBatches).count
            let rows = Int64(tokens * scenario.model.topK)
            workBytes = rows * combineBytes
            ranks[r].tokens = rows
        }
        ranks[r].bytesIn = slot.bytesIn
        ranks[r].wait = ready - slot.recvStart
        ranks[r].lastArrival = slot.lastArrival
        ranks[r].blocker = slot.lastArrival > slot.recvStart ? slot.blocker : -1
        slots[i].waiting = false
        slots[i].consumed = true
        let end = ready + cost.recvDuration(dispatch: dispatch, rank: r, bytes: workBytes)
        queue.push(EngineEvent(rank: Int32(r), kind: .kernelEnd), at: end)
    }

    mutating func drainDeliveries() throws {
        guard !deliveries.isEmpty else { return }
        for delivery in deliveries { try deliver(delivery) }
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
        }
        if options.recordFlows { flows.append(FlowRecord(flow: flow, posted: delivery.posted, arrival: delivery.arrival)) }
        if Int(slots[i].arrived) == n && slots[i].waiting { completeReceive(d, slot: i) }
    }

    // MARK: Routing

    /// The routing of (step, MoE layer), computed on first use and kept until every rank
    /// has sent its combine for every micro-batch of it.
    mutating func routingFor(step: Int, moeLayer: Int) -> CachedRouting {
        let key = step * scenario.model.moeLayers + moeLayer
        if let cached = routingCache[key] { return cached }
        let fresh = CachedRouting(
            routing: router.route(step: step, layer: moeLayer, microBatches: microBatches),
            remainingCombineSends: n * microBatches)
        routingCache[key] = fresh
        return fresh
    }
}
