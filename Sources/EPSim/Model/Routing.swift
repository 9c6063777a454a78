/// The routing of one MoE layer of one step, reduced to what the kernels need.
///
/// For each micro-batch: `n(s,d)` (selections of rank `s` routed to expert slots on rank
/// `d`, the number of dispatch messages from `s` to `d` and of combine messages back),
/// the per-slot load `m_e` (DeepEP's `masked_m`), and the tokens of each rank.
public struct LayerRouting: Sendable {
    public struct MicroBatchRouting: Sendable {
        /// `pairCounts[s * N + d] = n(s, d)`.
        public var pairCounts: [Int32]
        /// `expertLoad[p] = m_p`, tokens received by physical expert slot `p`.
        public var expertLoad: [Int32]
        /// Tokens of each rank in this micro-batch.
        public var tokens: [Int32]
        /// `uniquePairCounts[s * N + d]`: tokens of `s` with at least one expert on `d`, the
        /// message count of normal-mode kernels (which send a token once per rank). Empty
        /// unless requested.
        public var uniquePairCounts: [Int32]
        /// `maxSourceSlot[d]`: the most rows any one source rank sent to any one expert slot
        /// of `d` (the largest DeepEP (source, local expert) pair, which one warp group
        /// copies alone). Empty unless requested.
        public var maxSourceSlot: [Int32]
    }

    public var microBatches: [MicroBatchRouting]
}

/// How a selection of a replicated expert picks its replica.
public enum ReplicaPolicy: String, Sendable, CaseIterable {
    /// Each source rank cycles through the expert's replicas in slot order, source `s`
    /// starting at replica `s mod replicas`.
    case roundRobin = "round-robin"
    /// The replica that has received the fewest tokens so far in this layer (ties: lowest
    /// slot), sources taken in rank order.
    case leastLoaded = "least-loaded"
}

/// How tokens pick experts.
public enum RoutingKind: String, Sendable, CaseIterable {
    /// Token `g` (numbered globally over ranks) picks experts `(g*k + j) mod E`, `j < k`.
    case balanced
    /// Seeded random top-k without replacement, every expert equally likely.
    case uniform
    /// Seeded random top-k with Zipf popularity over a seeded permutation of the experts.
    case zipf
    /// Seeded random top-k where named experts are `factor` times as popular.
    case hot
    /// Read from a recorded trace.
    case trace
}

/// Decides which experts each token selects, deterministically from the scenario's seed.
///
/// Sampled kinds (`uniform`, `zipf`, `hot`) draw each token's `k` distinct experts from a
/// generator seeded by (seed, step, layer, rank), so routing changes per layer and step
/// and does not depend on evaluation order. With a group limit (DeepSeek's node-limited
/// routing) a token first picks `top_groups` distinct groups by their total popularity,
/// then its experts inside them.
public struct RoutingGenerator: Sendable {
    public let workload: Workload
    public let experts: Int
    public let topK: Int
    public let placement: ExpertPlacement
    let sampler: WeightedSampler?

    public init(workload: Workload, model: MoEModel) {
        self.workload = workload
        experts = model.experts
        topK = model.topK
        placement = model.expertPlacement
        let needsSampler = workload.routing == .zipf || workload.routing == .hot || (workload.routing == .uniform && workload.groupLimit != nil)
        sampler =
            needsSampler
            ? WeightedSampler(
                weights: workload.popularity ?? Array(repeating: 1, count: model.experts),
                groups: workload.groupLimit?.groups ?? 1, topGroups: workload.groupLimit?.topGroups ?? 1)
            : nil
    }

    /// Tokens of every rank in `step`.
    public var tokensPerRank: [Int] { workload.tokensPerRank }

    /// Calls `body(token, logical expert)` for every selection of `rank` in (step, layer),
    /// tokens in order, each token's `k` experts together.
    public func forEachLogicalSelection(rank: Int, step: Int, layer: Int, _ body: (Int, Int) -> Void) {
        let plan = workload.plan(step: step)
        let base = workload.routing == .balanced ? plan.tokens[..<rank].reduce(0, +) : 0
        forEachLogicalSelection(rank: rank, step: step, tokens: plan.tokens[rank], layer: layer, globalOffset: base, body)
    }

    /// The same for a rank with `count` tokens, with its first global token number
    /// (`T_0 + ... + T_(r-1)`) given by a caller that walks the ranks in order, so a
    /// layer's routing stays linear in ranks.
    func forEachLogicalSelection(rank: Int, step: Int, tokens count: Int, layer: Int, globalOffset base: Int, _ body: (Int, Int) -> Void) {
        switch workload.routing {
        case .balanced:
            for t in 0..<count {
                let first = ((base + t) % experts) * topK % experts
                for j in 0..<topK {
                    var e = first + j
                    if e >= experts { e -= experts }
                    body(t, e)
                }
            }
        case .trace:
            let trace = workload.trace!
            for t in 0..<count {
                for e in trace.experts(layer: layer, rank: rank, token: t) { body(t, Int(e)) }
            }
        case .uniform, .zipf, .hot:
            var rng = SplitMix64(seed: SplitMix64.mix(workload.seed, UInt64(step), UInt64(layer), UInt64(rank)))
            var chosen = [Int](repeating: 0, count: topK)
            if let sampler {
                sampler.forEachDraw(tokens: count, k: topK, rng: &rng) { t, experts in
                    for e in experts { body(t, e) }
                }
            } else {
                for t in 0..<count {
                    for j in 0..<topK {
                        var e: Int
                        repeat { e = rng.next(below: experts) } while chosen[0..<j].contains(e)
                        chosen[j] = e
                        body(t, e)
                    }
                }
            }
        }
    }

    /// The routing of one layer of one step, split into `microBatches`; with
    /// `uniquePairs`, also the per-(token, rank) counts of normal-mode kernels; with
    /// `pairMaxima`, the largest (source, slot) pair of each destination.
    public func route(step: Int, layer: Int, microBatches: Int, uniquePairs: Bool = false, pairMaxima: Bool = false) -> LayerRouting {
        route(plan: workload.plan(step: step), layer: layer, microBatches: microBatches, uniquePairs: uniquePairs, pairMaxima: pairMaxima)
    }

    /// The routing of one layer of the step `plan` describes (its tokens per rank and
    /// micro-batch split), as ``route(step:layer:microBatches:uniquePairs:pairMaxima:)``.
    ///
    /// This runs once per (step, MoE layer) over every selection of every rank (15 M for a
    /// DeepSeek-V3 decode step at EP 256), so a selection only counts its (micro-batch,
    /// slot) cell for its source rank; once the rank is done, each cell it touched adds
    /// its count to the slot's load and to the (source, destination) pair, and raises the
    /// destination's largest (source, slot) pair. The tables live in one block allocated
    /// here, written through pointers (no copy-on-write check per write), and are copied into
    /// the result's arrays at the end.
    public func route(plan: StepPlan, layer: Int, microBatches: Int, uniquePairs: Bool = false, pairMaxima: Bool = false) -> LayerRouting {
        let step = plan.step
        let n = plan.ranks
        let nn = n * n
        let slots = placement.slotExpert.count
        let replicated = slots > experts
        // One allocation for every table and scratch buffer of the layer (the allocation
        // gate counts every call to malloc): a block of Int followed by a block of Int32,
        // each carved in order below.
        let pairCells = microBatches * nn
        let slotCells = microBatches * slots
        let int32Total =
            pairCells + slotCells + (uniquePairs ? pairCells : 0) + (pairMaxima ? microBatches * n : 0) + microBatches * n + slotCells
            + (replicated ? 0 : experts)
        let intTotal = slotCells + 1 + (replicated ? experts + slots : 0) + (uniquePairs ? n : 0)
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: intTotal * MemoryLayout<Int>.stride + int32Total * MemoryLayout<Int32>.stride, alignment: MemoryLayout<Int>.alignment)
        defer { raw.deallocate() }
        let intBlock = UnsafeMutableBufferPointer(start: raw.bindMemory(to: Int.self, capacity: intTotal), count: intTotal)
        intBlock.initialize(repeating: 0)
        let int32Block = UnsafeMutableBufferPointer(
            start: (raw + intTotal * MemoryLayout<Int>.stride).bindMemory(to: Int32.self, capacity: int32Total), count: int32Total)
        int32Block.initialize(repeating: 0)
        var int32Used = 0
        var intUsed = 0
        /// The next `count` elements of `block`, whose first `used` are taken.
        func carve<T>(_ block: UnsafeMutableBufferPointer<T>, _ used: inout Int, _ count: Int) -> UnsafeMutableBufferPointer<T> {
            defer { used += count }
            return UnsafeMutableBufferPointer(rebasing: block[used..<(used + count)])
        }
        let pc = carve(int32Block, &int32Used, pairCells)
        let el = carve(int32Block, &int32Used, slotCells)
        let up = carve(int32Block, &int32Used, uniquePairs ? pairCells : 0)
        let ms = carve(int32Block, &int32Used, pairMaxima ? microBatches * n : 0)
        let tokens = carve(int32Block, &int32Used, microBatches * n)
        // The current source's selections per (micro-batch, slot) cell, and the first
        // `touchedCount` entries of `touched`: the cells it touched so far (one spare entry:
        // a selection writes its cell past the end before deciding whether it is new).
        let sourceSlot = carve(int32Block, &int32Used, slotCells)
        let touched = carve(intBlock, &intUsed, slotCells + 1)
        var touchedCount = 0
        let cursor = carve(intBlock, &intUsed, replicated ? experts : 0)
        let slotLoad = carve(intBlock, &intUsed, replicated ? slots : 0)
        // The last token counted towards each destination rank (for per-rank de-duplication).
        let lastToken = carve(intBlock, &intUsed, uniquePairs ? n : 0)
        lastToken.update(repeating: -1)
        // Without replicas an expert has one slot, wherever the placement put it (greedy or
        // `model.slots` may move it off the contiguous layout).
        let expertSlot = carve(int32Block, &int32Used, replicated ? 0 : experts)
        if !replicated { for e in 0..<experts { expertSlot[e] = placement.replicas[e][0] } }
        let slotRank = placement.slotRank
        let replicaPolicy = workload.replicaPolicy
        let replicas = placement.replicas
        var globalToken = 0
        for s in 0..<n {
            let splitAt = plan.tokenRange(rank: s, microBatch: .a, of: microBatches).upperBound
            for m in 0..<microBatches {
                tokens[m * n + s] = Int32(plan.tokenRange(rank: s, microBatch: MicroBatch(rawValue: UInt8(m))!, of: microBatches).count)
            }
            if replicated && replicaPolicy == .roundRobin { for e in 0..<experts { cursor[e] = s } }
            let row = s * n
            let base = globalToken
            forEachLogicalSelection(rank: s, step: step, tokens: plan.tokens[s], layer: layer, globalOffset: base) { t, e in
                let m = t < splitAt ? 0 : 1
                var slot: Int
                if replicated {
                    let reps = replicas[e]
                    switch replicaPolicy {
                    case .roundRobin:
                        slot = Int(reps[cursor[e] % reps.count])
                        cursor[e] += 1
                    case .leastLoaded:
                        slot = Int(reps[0])
                        for p in reps.dropFirst() where slotLoad[Int(p)] < slotLoad[slot] { slot = Int(p) }
                    }
                    slotLoad[slot] += 1
                } else {
                    slot = Int(expertSlot[e])
                }
                let cell = m * slots + slot
                // Without a branch (whether a cell is new is a coin toss, and a mispredicted
                // branch per selection cost more than the rest of the selection): the cell is
                // always written past the end of the list, and kept when new.
                let count = sourceSlot[cell]
                touched[touchedCount] = cell
                touchedCount += count == 0 ? 1 : 0
                sourceSlot[cell] = count + 1
                if uniquePairs {
                    let d = Int(slotRank[slot])
                    if lastToken[d] != base + t {
                        lastToken[d] = base + t
                        up[m * nn + row + d] += 1
                    }
                }
            }
            // The source's cells into the layer's tables, and cleared for the next source.
            for k in 0..<touchedCount {
                let cell = touched[k]
                let count = sourceSlot[cell]
                let (m, slot) = cell.quotientAndRemainder(dividingBy: slots)
                let d = Int(slotRank[slot])
                el[cell] += count
                pc[m * nn + row + d] += count
                if pairMaxima { ms[m * n + d] = max(ms[m * n + d], count) }
                sourceSlot[cell] = 0
            }
            touchedCount = 0
            globalToken += plan.tokens[s]
        }
        /// Micro-batch `m`'s part of a table of `size` per micro-batch.
        func part(_ table: UnsafeMutableBufferPointer<Int32>, _ m: Int, _ size: Int) -> [Int32] {
            table.isEmpty ? [] : Array(table[(m * size)..<((m + 1) * size)])
        }
        return LayerRouting(
            microBatches: (0..<microBatches).map { m in
                .init(
                    pairCounts: part(pc, m, nn), expertLoad: part(el, m, slots), tokens: part(tokens, m, n),
                    uniquePairCounts: part(up, m, nn), maxSourceSlot: part(ms, m, n))
            })
    }
}

/// Draws `k` distinct experts by popularity, optionally inside `topGroups` groups first.
struct WeightedSampler: Sendable {
    let weights: [Double]
    let groups: Int
    let groupSize: Int
    let topGroups: Int
    /// Cumulative weights within each group, `cumulative[g * groupSize + i]`.
    let cumulative: [Double]
    let groupTotal: [Double]
    /// Every expert equally popular: draws need no weights (same distribution, faster).
    let equalWeights: Bool

    init(weights: [Double], groups: Int, topGroups: Int) {
        self.weights = weights
        equalWeights = weights.allSatisfy { $0 == weights[0] } && weights[0] > 0
        self.groups = groups
        self.topGroups = min(topGroups, groups)
        groupSize = weights.count / groups
        var cum = [Double](repeating: 0, count: weights.count)
        var totals = [Double](repeating: 0, count: groups)
        for g in 0..<groups {
            var acc = 0.0
            for i in 0..<groupSize {
                acc += weights[g * groupSize + i]
                cum[g * groupSize + i] = acc
            }
            totals[g] = acc
        }
        cumulative = cum
        groupTotal = totals
    }

    static func unit(_ rng: inout SplitMix64) -> Double { Double(rng.next() >> 11) / Double(1 << 53) }

    /// Draws `k` distinct experts for each of `count` tokens in turn from `rng` and hands
    /// `body(token, experts)` each token's draw (valid during the call only). The tables and
    /// buffers are opened once for all the tokens, not once per token.
    func forEachDraw(tokens count: Int, k: Int, rng: inout SplitMix64, _ body: (Int, UnsafeMutableBufferPointer<Int>) -> Void) {
        var chosenGroups = [Int](repeating: 0, count: topGroups)
        var chosen = [Int](repeating: 0, count: k)
        weights.withUnsafeBufferPointer { w in
            cumulative.withUnsafeBufferPointer { cum in
                groupTotal.withUnsafeBufferPointer { gt in
                    chosenGroups.withUnsafeMutableBufferPointer { cg in
                        chosen.withUnsafeMutableBufferPointer { out in
                            for t in 0..<count {
                                sample(k, w: w, cum: cum, gt: gt, cg: cg, out: out, rng: &rng)
                                body(t, out)
                            }
                        }
                    }
                }
            }
        }
    }

    private func sample(
        _ k: Int, w: UnsafeBufferPointer<Double>, cum: UnsafeBufferPointer<Double>, gt: UnsafeBufferPointer<Double>,
        cg: UnsafeMutableBufferPointer<Int>, out: UnsafeMutableBufferPointer<Int>, rng: inout SplitMix64
    ) {
        if equalWeights {
            // Distinct groups uniformly, then distinct experts uniformly over their union.
            for i in 0..<topGroups {
                var g: Int
                repeat { g = rng.next(below: groups) } while Self.contains(cg, i, g)
                cg[i] = g
            }
            let pool = topGroups * groupSize
            for j in 0..<k {
                var e: Int
                repeat {
                    let x = rng.next(below: pool)
                    e = cg[x / groupSize] * groupSize + x % groupSize
                } while Self.contains(out, j, e)
                out[j] = e
            }
            return
        }
        // Groups: weighted draws without replacement (all of them when every group may be used).
        if topGroups == groups {
            for i in 0..<groups { cg[i] = i }
        } else {
            for i in 0..<topGroups {
                var total = 0.0
                for g in 0..<groups where !Self.contains(cg, i, g) { total += gt[g] }
                var u = Self.unit(&rng) * total
                var pick = -1
                for g in 0..<groups where !Self.contains(cg, i, g) {
                    pick = g
                    u -= gt[g]
                    if u < 0 { break }
                }
                cg[i] = pick
            }
        }
        var groupWeight = 0.0
        for i in 0..<topGroups { groupWeight += gt[cg[i]] }
        for j in 0..<k {
            var found = -1
            // Rejection sampling (cheap while few experts are taken); exact fallback after that.
            for _ in 0..<64 {
                var u = Self.unit(&rng) * groupWeight
                var g = cg[topGroups - 1]
                for i in 0..<topGroups {
                    u -= gt[cg[i]]
                    if u < 0 {
                        g = cg[i]
                        break
                    }
                }
                let target = Self.unit(&rng) * gt[g]
                var lo = g * groupSize
                var hi = lo + groupSize - 1
                while lo < hi {
                    let mid = (lo + hi) >> 1
                    if cum[mid] > target { hi = mid } else { lo = mid + 1 }
                }
                if w[lo] > 0 && !Self.contains(out, j, lo) {
                    found = lo
                    break
                }
            }
            if found < 0 {
                var total = 0.0
                for i in 0..<topGroups {
                    for c in (cg[i] * groupSize)..<((cg[i] + 1) * groupSize) where !Self.contains(out, j, c) { total += max(w[c], 1e-300) }
                }
                var u = Self.unit(&rng) * total
                search: for i in 0..<topGroups {
                    for c in (cg[i] * groupSize)..<((cg[i] + 1) * groupSize) where !Self.contains(out, j, c) {
                        found = c
                        u -= max(w[c], 1e-300)
                        if u < 0 { break search }
                    }
                }
            }
            out[j] = found
        }
    }

    @inline(__always) static func contains(_ buffer: UnsafeMutableBufferPointer<Int>, _ count: Int, _ value: Int) -> Bool {
        for i in 0..<count where buffer[i] == value { return true }
        return false
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, well-mixed generator whose whole
/// state is one word, so a fresh stream per (seed, step, layer, rank) costs nothing.
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0 ..< bound` without modulo bias (Lemire's multiply-shift with rejection).
    public mutating func next(below bound: Int) -> Int {
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// Mixes several words into one seed.
    public static func mix(_ words: UInt64...) -> UInt64 {
        var g = SplitMix64(seed: 0x5EED)
        var h: UInt64 = 0
        for w in words {
            g.state ^= w
            h = g.next() ^ (h &* 0x100_0000_01B3)
        }
        return h
    }
}
