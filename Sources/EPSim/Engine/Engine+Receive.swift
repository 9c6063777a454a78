import EventCore

extension Engine where Net: ~Copyable {
    // MARK: Receiving

    /// The slot of `operation` at rank `r`, claimed for it if the slot's previous
    /// operation has been consumed; a slot still holding unread data is an overrun.
    ///
    /// Inlined: every flow's delivery asks, and all but the first flow of an operation at a
    /// rank find the slot already theirs.
    @inline(__always) mutating func slotIndex(rank r: Int, operation: Int32) throws -> Int {
        let i = r * Self.ringSize + Int(operation) % Self.ringSize
        if slots[i].operation != operation { try claimSlot(i, rank: r, operation: operation) }
        return i
    }

    /// Claims slot `i` of rank `r` for `operation` (``slotIndex(rank:operation:)``'s rare path).
    @inline(never) mutating func claimSlot(_ i: Int, rank r: Int, operation: Int32) throws {
        guard slots[i].consumed else {
            throw SimulationError(
                code: .bufferOverrun, message: "rank \(r) received operation \(operation) while operation \(slots[i].operation) was unread")
        }
        slots[i] = RecvSlot(operation: operation, consumed: false)
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
        assert(Int(slot.arrived) == n, "a receive completed before every sender's flow arrived")
        let wait = ready - slot.recvStart
        slots[i].waitingLane = -1
        slots[i].consumed = true
        lanes[lane].wait += wait
        lanes[lane].lastArrival = slot.lastArrival
        if wait > .zero {
            // Wait a rank caused others: its wait on its own flow is not counted, nor a wait
            // whose last arrivals tie (no one rank caused it).
            if Int(slot.blocker) != r && !slot.lastTied { blockedWait[Int(slot.blocker)] += wait }
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
            let tokens = plans[Int(ranks[r].step)]!.plan.tokenRange(rank: r, microBatch: instr.microBatch, of: microBatches).count
            let rows = Int64(tokens * scenario.model.topK)
            workBytes = rows * combineBytes
            lanes[lane].tokens = rows
        }
        lanes[lane].bytesIn = slot.bytesIn
        lanes[lane].phase = .copy
        // A low-latency dispatch RECV gives each (source, local expert) pair one warp group.
        var pairBytes: Int64 = 0
        if dispatch && pairLimited {
            let routing = routingFor(step: Int(ranks[r].step), moeLayer: Int(instr.moeLayer)).routing
            pairBytes = Int64(mbRoutingMaxSourceSlot(lane: lane, routing: routing)) * dispatchBytes
        }
        let end = ready + cost.recvDuration(dispatch: dispatch, rank: RankID(r), bytes: workBytes, pairBytes: pairBytes)
        queue.push(EngineEvent(lane: Int32(lane), kind: .kernelEnd, version: lanes[lane].version), at: end)
    }

    /// Delivers every pending delivery once. Completing a receive may post more flows (a
    /// normal-mode SEND after its count exchange), which append to `deliveries` and call
    /// back here: a nested call returns at once and the loop below picks them up, so each
    /// delivery is handled exactly once and the stack stays flat.
    ///
    /// Every flow of a run passes through this loop, so ``deliver(_:)`` is inlined into it
    /// and reaches its slot through the slot table's fixed base pointer.
    mutating func drainDeliveries() throws {
        guard !draining, !deliveries.isEmpty else { return }
        draining = true
        defer { draining = false }
        var k = 0
        while k < deliveries.count {
            try deliver(deliveries[k])
            k += 1
        }
        deliveries.removeAll(keepingCapacity: true)
    }

    /// A flow's last control message reached its destination.
    @inline(__always) mutating func deliver(_ delivery: Delivery) throws {
        let flow = delivery.flow
        let d = Int(flow.destination)
        let i = try slotIndex(rank: d, operation: flow.operation)
        let slot = slots.base + i
        slot.pointee.add(delivery)
        assert(Int(slot.pointee.arrived) <= n, "rank \(d), operation \(flow.operation): more arrivals than senders")
        assert(delivery.arrival >= delivery.posted, "a flow arrived before its control message left")
        if options.recordFlows { recordFlow(delivery) }
        if Int(slot.pointee.arrived) == n && slot.pointee.waitingLane >= 0 { try completeReceive(slot: i) }
    }

    /// Keeps a delivered flow (``SimulationOptions/recordFlows``) and hands it to the observer.
    @inline(never) mutating func recordFlow(_ delivery: Delivery) {
        let record = FlowRecord(flow: delivery.flow, posted: delivery.posted, arrival: delivery.arrival)
        flows.append(record)
        observer?.flowDelivered(record)
    }
}
