import EventCore

/// The chain of kernels and messages, across ranks, that sets a step's latency.
///
/// Walked backwards from the end of the slowest rank's step: a kernel that did not wait
/// was gated by the kernel before it on its rank (the one that ended when it started, or
/// else the latest to end before it started: the time between is a launch gap); a RECV
/// that waited was gated by the last message it received, which was gated by the SEND
/// that posted it. The links tile the step without gaps or overlaps, so their durations
/// add up to the step latency exactly.
public struct CriticalPath: Sendable {
    public enum LinkKind: String, Sendable {
        /// A whole kernel (or the part of it inside the step).
        case kernel
        /// The SEND part of a kernel, up to the posting of the critical message.
        case send
        /// A message in flight, from the end of a SEND to its arrival.
        case message
        /// The stream idle between a kernel and the next one it gated (the launch gap).
        case launch
        /// The copy or reduce of a RECV after its last arrival.
        case receive
    }

    public struct Link: Sendable {
        public var kind: LinkKind
        /// The rank the link runs on (for a message: the receiver).
        public var rank: Int32
        /// For a message: the sender.
        public var fromRank: Int32
        public var kernel: KernelRecord
        public var start: SimTime
        public var end: SimTime
        public var duration: SimTime { end - start }
    }

    public var step: Int
    public var rank: Int
    public var start: SimTime
    public var end: SimTime
    /// In time order.
    public var links: [Link]

    public var length: SimTime { links.reduce(.zero) { $0 + $1.duration } }

    /// The critical path of `step` (default: the slowest) of a run with a full timeline.
    public init?(_ result: RunResult, step requested: Int? = nil) {
        guard !result.kernels.isEmpty else { return nil }
        let latencies = result.stepLatencies
        let step = requested ?? (latencies.firstIndex(of: result.stepLatency) ?? 0)
        guard (0..<result.steps).contains(step) else { return nil }
        let rows = (0..<result.ranks).map { result.rankStep(rank: $0, step: step) }
        let target = rows.max { $0.latency < $1.latency || ($0.latency == $1.latency && $0.rank > $1.rank) }!
        self.step = step
        rank = Int(target.rank)
        start = target.start
        end = target.end
        let index = BlameIndex(result.kernels)
        let kernels = result.kernels
        // Each kernel's predecessor on its own stream (program order), and every kernel by end time per rank.
        var previous = [Int](repeating: -1, count: kernels.count)
        var lastOnStream: [Int: Int] = [:]
        var endingAt: [Int64: [Int]] = [:]
        // Every lane's kernels by end time (for the latest one to end before a start).
        var byEnd: [Int: [Int]] = [:]
        for (i, k) in kernels.enumerated() {
            let lane = Int(k.rank) * 2 + Int(k.stream.rawValue)
            if let p = lastOnStream[lane] { previous[i] = p }
            lastOnStream[lane] = i
            endingAt[Int64(k.rank) << 48 | k.end.picos, default: []].append(i)
            byEnd[lane, default: []].append(i)
        }
        for lane in byEnd.keys { byEnd[lane]!.sort { kernels[$0].end < kernels[$1].end || (kernels[$0].end == kernels[$1].end && $0 < $1) } }
        /// The kernel of `lane` that ended last at or before `t`.
        func latestEnded(lane: Int, by t: SimTime) -> Int? {
            guard let list = byEnd[lane] else { return nil }
            var lo = 0
            var hi = list.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if kernels[list[mid]].end <= t { lo = mid + 1 } else { hi = mid }
            }
            return lo > 0 ? list[lo - 1] : nil
        }
        /// What gated kernel `i` at its start: the previous kernel on its stream if that ended
        /// then, else a kernel of the rank's other stream that ended then; else (a launch gap
        /// in between) whichever of the two ended last before it started.
        func gate(_ i: Int) -> Int? {
            let k = kernels[i]
            if previous[i] >= 0 && kernels[previous[i]].end == k.start { return previous[i] }
            if let other = endingAt[Int64(k.rank) << 48 | k.start.picos]?.first(where: { $0 != i && kernels[$0].stream != k.stream }) {
                return other
            }
            let same = previous[i] >= 0 && kernels[previous[i]].end < k.start ? previous[i] : nil
            let other = latestEnded(lane: Int(k.rank) * 2 + 1 - Int(k.stream.rawValue), by: k.start)
            switch (same, other) {
            case let (s?, o?): return kernels[o].end > kernels[s].end ? o : s
            case let (s, o): return s ?? o
            }
        }
        var links: [Link] = []
        let targetRank = target.rank
        let stepIndex = Int32(step)
        let stepStart = target.start
        let last = kernels.indices.filter { kernels[$0].rank == targetRank && kernels[$0].step == stepIndex }
            .max { kernels[$0].end < kernels[$1].end || (kernels[$0].end == kernels[$1].end && $0 < $1) }
        var current = last
        while let i = current {
            let k = kernels[i]
            if let arrival = k.lastArrival, k.wait > .zero, k.blocker >= 0, let s = index.senderIndex(of: k, on: k.blocker),
                let posted = kernels[s].sendEnd, posted <= arrival
            {
                let sender = kernels[s]
                links.append(Link(kind: .receive, rank: k.rank, fromRank: k.rank, kernel: k, start: arrival, end: k.end))
                links.append(Link(kind: .message, rank: k.rank, fromRank: sender.rank, kernel: sender, start: posted, end: arrival))
                if posted <= stepStart { break }
                links.append(Link(kind: .send, rank: sender.rank, fromRank: sender.rank, kernel: sender, start: sender.start, end: posted))
                if sender.start <= stepStart { break }
                current = gate(s)
                let gateEnd = current.map { kernels[$0].end } ?? stepStart
                if gateEnd < sender.start {
                    links.append(Link(kind: .launch, rank: sender.rank, fromRank: sender.rank, kernel: sender, start: gateEnd, end: sender.start))
                }
            } else {
                links.append(Link(kind: .kernel, rank: k.rank, fromRank: k.rank, kernel: k, start: k.start, end: k.end))
                if k.start <= stepStart { break }
                current = gate(i)
                let gateEnd = current.map { kernels[$0].end } ?? stepStart
                if gateEnd < k.start {
                    links.append(Link(kind: .launch, rank: k.rank, fromRank: k.rank, kernel: k, start: gateEnd, end: k.start))
                }
            }
        }
        // Clip to the step and put in time order.
        self.links = links.reversed().compactMap { link in
            var l = link
            l.start = max(l.start, stepStart)
            return l.end > l.start ? l : nil
        }
    }

    /// True when the links tile `[start, end]` exactly.
    public var isContiguous: Bool {
        guard let first = links.first, let last = links.last else { return start == end }
        guard first.start == start, last.end == end else { return false }
        return zip(links, links.dropFirst()).allSatisfy { $0.end == $1.start }
    }
}

/// A rank's step, accounted: its own work, and the wait others and the network caused it.
public struct RankAccount: Sendable {
    public var rank: Int
    public var latency: SimTime
    /// Kernel time minus wait: what the rank computed, sent and copied itself.
    public var ownWork: SimTime
    /// Wait caused by each other rank (by starting late or sending longer), by rank.
    public var waitByRank: [Int: SimTime]
    /// Wait caused by the network (messages in flight beyond the rank's own SEND).
    public var waitByNetwork: SimTime
    public var totalWait: SimTime { waitByRank.values.reduce(.zero, +) + waitByNetwork }

    /// Every rank's account for `step`: each wait's `blockerLag` goes to its blocker, the
    /// rest to the network.
    public static func accounts(_ result: RunResult, step: Int) -> [RankAccount] {
        var out = (0..<result.ranks).map { r in
            RankAccount(rank: r, latency: result.rankStep(rank: r, step: step).latency, ownWork: .zero, waitByRank: [:], waitByNetwork: .zero)
        }
        for k in result.kernels where k.step == Int32(step) {
            let r = Int(k.rank)
            out[r].ownWork += k.duration - k.wait
            guard k.wait > .zero else { continue }
            if k.blocker >= 0 && k.blockerLag > .zero { out[r].waitByRank[Int(k.blocker), default: .zero] += k.blockerLag }
            out[r].waitByNetwork += k.wait - k.blockerLag
        }
        return out
    }
}
