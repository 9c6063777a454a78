import EventCore

extension Engine where Net: ~Copyable {
    // MARK: Compute and SM sharing

    /// Starts a compute kernel of `duration` at full SMs: it needs `duration x S` SM-ps of
    /// work and progresses at the SMs it has (all, or all but the comm kernel's).
    mutating func startCompute(lane: Int, duration: SimTime, at now: SimTime) {
        lanes[lane].phase = .compute
        lanes[lane].workLeft = duration.times(totalSMs).picos
        lanes[lane].lastUpdate = now
        lanes[lane].sms = availableSMs(rank: lane >> 1, stream: lane & 1)
        // Single-batch overlap: the down projection is the MLP's last third of work.
        let instr = instructions[lanes[lane].instruction]
        lanes[lane].releaseWorkLeft =
            program.overlapDownGEMM && instr.kind == .mlp ? Int64((Double(lanes[lane].workLeft) * ScheduleSpec.downProjectionShare).rounded(.down)) : -1
        scheduleComputeEnd(lane: lane, at: now)
    }

    func availableSMs(rank r: Int, stream: Int) -> Int64 {
        stream == Int(StreamKind.compute.rawValue) && ranks[r].commResident ? totalSMs - commSMs : totalSMs
    }

    mutating func scheduleComputeEnd(lane: Int, at now: SimTime) {
        let sms = lanes[lane].sms
        let left = lanes[lane].workLeft
        let end = now + SimTime(picos: left / sms + (left % sms == 0 ? 0 : 1))
        let release = lanes[lane].releaseWorkLeft
        if release >= 0 {
            let toGo = max(0, left - release)
            queue.push(
                EngineEvent(lane: Int32(lane), kind: .release, version: lanes[lane].version), at: now + SimTime(picos: toGo / sms + (toGo % sms == 0 ? 0 : 1)))
        }
        queue.push(EngineEvent(lane: Int32(lane), kind: .kernelEnd, version: lanes[lane].version), at: end)
    }

    /// A comm-stream kernel starts or ends: the compute kernel running beside it changes speed.
    mutating func setCommResident(_ r: Int, _ resident: Bool, at now: SimTime) {
        ranks[r].commResident = resident
        let lane = r * 2 + Int(StreamKind.compute.rawValue)
        guard lanes[lane].phase == .compute else { return }
        let progressed = (now - lanes[lane].lastUpdate).times(lanes[lane].sms).picos
        lanes[lane].workLeft = max(0, lanes[lane].workLeft - progressed)
        lanes[lane].lastUpdate = now
        lanes[lane].sms = availableSMs(rank: r, stream: Int(StreamKind.compute.rawValue))
        lanes[lane].version &+= 1
        scheduleComputeEnd(lane: lane, at: now)
    }
}
