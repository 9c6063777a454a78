import EventCore

extension Engine where Net: ~Copyable {
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
        let link = scenario.network.link(slot.blockerPath)
        let transfer = SimTime.transfer(bytes: slot.blockerBytes, gigabytesPerSecond: link.bandwidthGBps)
        // When the flow would have arrived alone on its links.
        let blocker = Flow(
            source: slot.blocker, destination: Int32(r), operation: slot.operation, path: slot.blockerPath, messages: slot.blockerMessages, bytes: slot.blockerBytes)
        let alone = net.uncontendedArrival(blocker, started: slot.blockerStarted, posted: slot.blockerPosted)
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
}
