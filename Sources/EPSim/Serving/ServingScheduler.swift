import EventCore
import Foundation

/// A decode request: when it reaches the decode instance, the KV-cache tokens it brings (its
/// prompt, prefilled elsewhere) and the tokens it will generate.
public struct ServingRequest: Sendable, Equatable {
    public var id: Int
    public var arrival: SimTime
    public var inputTokens: Int
    public var outputTokens: Int
}

/// What happened to one request (times are simulated time; nil: not reached in the run).
public struct ServingRequestRecord: Sendable, Equatable {
    public var request: ServingRequest
    /// The rank it was assigned to (-1: not yet).
    public var rank = -1
    /// The step it was admitted in, and when that rank began the step (its decode start).
    public var admittedStep: Int?
    public var decodeStart: SimTime?
    /// Its rank's end of its first decode step, and of the step that gave its last token.
    public var firstToken: SimTime?
    public var finish: SimTime?
    /// Output tokens generated so far (accepted tokens with multi-token prediction).
    public var generated = 0
    /// Refused on arrival: its input plus output tokens exceed a rank's KV capacity.
    public var rejected = false

    /// Time per output token while decoding: `(finish - decodeStart) / output tokens`.
    public var tpot: SimTime? {
        guard let finish, let decodeStart, request.outputTokens > 0 else { return nil }
        return SimTime(picos: (finish - decodeStart).picos / Int64(request.outputTokens))
    }
    /// Time from arrival to the start of its first decode step.
    public var queueing: SimTime? { decodeStart.map { $0 - request.arrival } }
}

/// The DP-attention scheduler of a serving run: the arrival stream, the queue(s), every
/// rank's active requests and KV-cache use, admission by ``ServingConfig/Policy`` between
/// steps, and each step's completions. Pure bookkeeping, no timing: ``ServingLoop`` asks it
/// for each step's plan and tells it when each rank ended the step.
///
/// Deterministic: every draw (arrival gaps, lengths, the random policy, accepted draft
/// tokens) comes from a generator seeded by (seed, purpose, index).
public struct ServingScheduler: Sendable {
    public let config: ServingConfig
    public let ranks: Int
    /// `1 + d` query tokens per request on each rank (multi-token prediction).
    public let queryTokens: [Int]
    public let acceptanceRate: Double

    /// One request being decoded on a rank.
    struct Active: Sendable {
        var record: Int
        var kv: Int
        var reserved: Int
        /// When its last token (or, before the first, its decode start) was delivered.
        var lastToken: SimTime
    }

    public private(set) var records: [ServingRequestRecord] = []
    var active: [[Active]]
    var kvInUse: [Int]
    var kvReserved: [Int]
    /// Central queue (record indices, FIFO from `queueHead`), or one per rank.
    var queue: [Int] = []
    var queueHead = 0
    var rankQueues: [[Int]]
    var rankQueueHeads: [Int]
    /// Input tokens of the requests waiting in each rank's queue.
    var rankQueueKV: [Int]
    var nextRoundRobin = 0
    /// Requests refused on arrival so far (too large for a rank's KV capacity).
    var rejected = 0
    var randomDraws: UInt64 = 0
    /// The arrival stream: the next open-loop request, and closed-loop arrivals to come.
    var generated = 0
    var nextOpenArrival: SimTime = .zero
    /// Closed loop: the arrivals to come (a heap: thousands of finishes a step).
    var spawned = EventQueue<Bool>()
    /// Inter-token gaps delivered so far, each with the requests that saw it (in steps
    /// counted from ``ServingConfig/warmupSteps``).
    public private(set) var interTokenGaps: [(gap: SimTime, requests: Int)] = []

    static let arrivalPurpose: UInt64 = 0x5341
    static let inputPurpose: UInt64 = 0x5349
    static let outputPurpose: UInt64 = 0x534F
    static let policyPurpose: UInt64 = 0x5350
    static let acceptPurpose: UInt64 = 0x534D

    public init(config: ServingConfig, ranks: Int, queryTokens: [Int], acceptanceRate: Double) {
        self.config = config
        self.ranks = ranks
        self.queryTokens = queryTokens
        self.acceptanceRate = acceptanceRate
        active = Array(repeating: [], count: ranks)
        kvInUse = Array(repeating: 0, count: ranks)
        kvReserved = kvInUse
        rankQueues = Array(repeating: [], count: ranks)
        rankQueueHeads = kvInUse
        rankQueueKV = kvInUse
        if case .closedLoop(let c) = config.arrivals {
            spawned = EventQueue(reservingCapacity: min(c, 1 << 20))
            for _ in 0..<c { spawned.push(true, at: .zero) }
        }
        if case .poisson = config.arrivals { nextOpenArrival = gap(index: 0) }
    }

    // MARK: Arrivals

    /// Exponential gap before Poisson request `index`.
    func gap(index: Int) -> SimTime {
        guard case .poisson(let rate) = config.arrivals else { return .zero }
        var g = SplitMix64(seed: SplitMix64.mix(config.seed, Self.arrivalPurpose, UInt64(index)))
        let u = max(Distribution.unit(&g), 1e-300)
        return SimTime(micros: -log(u) / rate * 1e6)
    }

    /// The next request's arrival time, nil when no more will arrive (a closed loop always
    /// has one to come while a request is in the system).
    public var nextArrival: SimTime? {
        if let limit = config.requestLimit, generated >= limit { return nil }
        switch config.arrivals {
        case .poisson: return nextOpenArrival
        case let .bursts(size, interval): return SimTime(micros: Double(generated / size) * interval)
        case .closedLoop: return spawned.nextTime
        case .trace(let rows): return generated < rows.count ? SimTime(micros: rows[generated].arrivalMicros) : nil
        }
    }

    mutating func drawRequest(at arrival: SimTime) -> ServingRequest {
        let i = generated
        generated += 1
        if case .trace(let rows) = config.arrivals {
            return ServingRequest(id: i, arrival: arrival, inputTokens: rows[i].inputTokens, outputTokens: rows[i].outputTokens)
        }
        let input = config.inputTokens.draw(rank: 0, step: i, seed: config.seed, purpose: Self.inputPurpose, range: 1...ServingConfig.maxInputTokens)
        let output = config.outputTokens.draw(rank: 0, step: i, seed: config.seed, purpose: Self.outputPurpose, range: 1...ServingConfig.maxOutputTokens)
        return ServingRequest(id: i, arrival: arrival, inputTokens: input, outputTokens: output)
    }

    /// The most requests that may wait at once: past it the arrivals outrun the ranks for
    /// good, and a run would only grow its queue (and its memory).
    public static let maxWaiting = 1_000_000

    /// Takes every request arriving at or before `time` into the queue(s); one that could
    /// never fit a rank's KV cache is rejected. Returns false, leaving the rest to come,
    /// when ``maxWaiting`` requests wait.
    @discardableResult
    public mutating func arrive(until time: SimTime) -> Bool {
        while let t = nextArrival, t <= time {
            if queuedRequests >= Self.maxWaiting || rejected >= Self.maxWaiting { return false }
            switch config.arrivals {
            case .poisson: nextOpenArrival = t + gap(index: generated + 1)
            case .closedLoop: spawned.removeFirst()
            default: break
            }
            let request = drawRequest(at: t)
            var record = ServingRequestRecord(request: request)
            let index = records.count
            if request.inputTokens + request.outputTokens > config.kvCapacityTokens {
                record.rejected = true
                rejected += 1
                records.append(record)
                if case .closedLoop = config.arrivals { spawned.push(true, at: t) }
                continue
            }
            records.append(record)
            switch config.queueing {
            case .central: queue.append(index)
            case .perRank:
                // Assigned on arrival, whatever the room: the load counts queued requests too.
                let r = choose(index, among: Array(0..<ranks), countingQueued: true)
                records[index].rank = r
                rankQueues[r].append(index)
                rankQueueKV[r] += request.inputTokens
            }
        }
        return true
    }

    // MARK: Admission

    func fits(_ index: Int, rank r: Int) -> Bool {
        let q = records[index].request
        return active[r].count < config.maxRequestsPerRank && kvReserved[r] + q.inputTokens + q.outputTokens <= config.kvCapacityTokens
    }

    /// The policy's choice for request `index` among `candidates` (not empty).
    mutating func choose(_ index: Int, among candidates: [Int], countingQueued: Bool) -> Int {
        func requests(_ r: Int) -> Int { active[r].count + (countingQueued ? rankQueues[r].count - rankQueueHeads[r] : 0) }
        func kv(_ r: Int) -> Int {
            guard countingQueued else { return kvInUse[r] }
            return kvInUse[r] + rankQueueKV[r]
        }
        func least(_ score: (Int) -> Double) -> Int {
            var best = candidates[0]
            var bestScore = score(best)
            for r in candidates.dropFirst() {
                let s = score(r)
                if s < bestScore { (best, bestScore) = (r, s) }
            }
            return best
        }
        switch config.policy {
        case .roundRobin:
            // The first candidate at or after the cursor, cyclically.
            let r = candidates.min { ($0 - nextRoundRobin + ranks) % ranks < ($1 - nextRoundRobin + ranks) % ranks }!
            nextRoundRobin = (r + 1) % ranks
            return r
        case .random:
            var g = SplitMix64(seed: SplitMix64.mix(config.seed, Self.policyPurpose, randomDraws))
            randomDraws += 1
            return candidates[g.next(below: candidates.count)]
        case .leastRequests: return least { Double(requests($0)) }
        case .leastKV: return least { Double(kv($0)) }
        case let .weighted(wr, wk):
            // Each load over its mean across all ranks (1: an average rank), so the weights
            // trade like for like whatever the batch and KV capacities are; an all-idle term
            // counts 0.
            var requestSum = 0
            var kvSum = 0
            for r in 0..<ranks {
                requestSum += requests(r)
                kvSum += kv(r)
            }
            let requestScale = requestSum > 0 ? Double(ranks) / Double(requestSum) : 0
            let kvScale = kvSum > 0 ? Double(ranks) / Double(kvSum) : 0
            return least { wr * Double(requests($0)) * requestScale + wk * Double(kv($0)) * kvScale }
        }
    }

    /// Admits waiting requests for `step` (called when its first rank begins it); each
    /// starts decoding when its rank begins the step (`rankStarts`). Returns how many it admitted.
    @discardableResult
    public mutating func admit(step: Int, rankStarts: [SimTime]) -> Int {
        var admitted = 0
        func place(_ index: Int, on r: Int) {
            records[index].rank = r
            records[index].admittedStep = step
            records[index].decodeStart = rankStarts[r]
            let q = records[index].request
            active[r].append(Active(record: index, kv: q.inputTokens, reserved: q.inputTokens + q.outputTokens, lastToken: rankStarts[r]))
            kvInUse[r] += q.inputTokens
            kvReserved[r] += q.inputTokens + q.outputTokens
            admitted += 1
        }
        switch config.queueing {
        case .central:
            while queueHead < queue.count {
                let index = queue[queueHead]
                let room = (0..<ranks).filter { fits(index, rank: $0) }
                guard !room.isEmpty else { break }
                place(index, on: choose(index, among: room, countingQueued: false))
                queueHead += 1
            }
            if queueHead > 4096 && queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
        case .perRank:
            for r in 0..<ranks {
                while rankQueueHeads[r] < rankQueues[r].count, fits(rankQueues[r][rankQueueHeads[r]], rank: r) {
                    place(rankQueues[r][rankQueueHeads[r]], on: r)
                    rankQueueKV[r] -= records[rankQueues[r][rankQueueHeads[r]]].request.inputTokens
                    rankQueueHeads[r] += 1
                }
            }
        }
        return admitted
    }

    // MARK: Steps

    /// Requests decoding now, on all ranks.
    public var activeRequests: Int { active.reduce(0) { $0 + $1.count } }
    /// Requests arrived and waiting for admission.
    public var queuedRequests: Int {
        (queue.count - queueHead) + (0..<ranks).reduce(0) { $0 + rankQueues[$1].count - rankQueueHeads[$1] }
    }
    /// Requests decoding on `rank`, and their KV-cache tokens.
    public func requests(rank: Int) -> Int { active[rank].count }
    public func kvTokens(rank: Int) -> Int { kvInUse[rank] }

    /// The plan of `step`: each rank's active requests, `1 + d` tokens each, with their KV
    /// lengths (``StepPlan/requestKV``) in admission order.
    public func plan(step: Int) -> StepPlan {
        let kv = active.map { $0.map(\.kv) }
        let tokens = (0..<ranks).map { active[$0].count * queryTokens[$0] }
        var mean = [Int](repeating: 0, count: ranks)
        for r in 0..<ranks where !active[r].isEmpty {
            let count = active[r].count
            mean[r] = (kvInUse[r] + count / 2) / count
        }
        let mtp: [Int]? = queryTokens.contains { $0 > 1 } ? queryTokens : nil
        return StepPlan(step: step, tokens: tokens, kvLength: mean, queryTokensPerRequest: mtp, requestKV: kv)
    }

    /// The same requests spread evenly: `R / N` per rank (the first `R mod N` ranks one
    /// more), each with the mean KV length: the balanced counterfactual of `step`.
    public func balancedPlan(step: Int) -> StepPlan {
        let total = activeRequests
        let kv = total == 0 ? 0 : (kvInUse.reduce(0, +) + total / 2) / total
        let counts = (0..<ranks).map { total / ranks + ($0 < total % ranks ? 1 : 0) }
        let q = queryTokens.max() ?? 1
        return StepPlan(
            step: step, tokens: counts.map { $0 * q }, kvLength: Array(repeating: kv, count: ranks),
            queryTokensPerRequest: q > 1 ? Array(repeating: q, count: ranks) : nil)
    }

    /// Output tokens a request gains in `step`: 1, plus with `d` draft tokens those accepted
    /// in a row (each with ``acceptanceRate`` given the one before).
    func acceptedTokens(record: Int, step: Int, rank: Int) -> Int {
        let d = queryTokens[rank] - 1
        guard d > 0 else { return 1 }
        var g = SplitMix64(seed: SplitMix64.mix(config.seed, Self.acceptPurpose, UInt64(records[record].request.id), UInt64(step)))
        var k = 1
        while k <= d && Distribution.unit(&g) < acceptanceRate { k += 1 }
        return k
    }

    /// Every rank ended `step` at `ends[r]`: each active request gains its tokens, those
    /// with all their output leave, and (closed loop) each leaving request brings a new one
    /// at its finish. Returns how many finished and the output tokens gained.
    @discardableResult
    public mutating func complete(step: Int, ends: [SimTime]) -> (finished: Int, tokens: Int) {
        var finished = 0
        var tokens = 0
        let counted = step >= config.warmupSteps
        for r in 0..<ranks {
            var kept: [Active] = []
            kept.reserveCapacity(active[r].count)
            var gaps: [SimTime: Int] = [:]
            for var a in active[r] {
                let gain = acceptedTokens(record: a.record, step: step, rank: r)
                let q = records[a.record].request
                let take = min(gain, q.outputTokens - records[a.record].generated)
                records[a.record].generated += take
                tokens += take
                if records[a.record].firstToken == nil { records[a.record].firstToken = ends[r] }
                if counted { gaps[ends[r] - a.lastToken, default: 0] += 1 }
                a.lastToken = ends[r]
                a.kv += take
                kvInUse[r] += take
                if records[a.record].generated >= q.outputTokens {
                    records[a.record].finish = ends[r]
                    kvInUse[r] -= a.kv
                    kvReserved[r] -= a.reserved
                    finished += 1
                    if case .closedLoop = config.arrivals { spawned.push(true, at: ends[r]) }
                } else {
                    kept.append(a)
                }
            }
            for (gap, n) in gaps.sorted(by: { $0.key < $1.key }) { interTokenGaps.append((gap, n)) }
            active[r] = kept
        }
        return (finished, tokens)
    }
}
