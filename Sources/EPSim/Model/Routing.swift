/// The routing of one MoE layer of one step, reduced to what the kernels need.
///
/// For each micro-batch: `n(s,d)` (selections of rank `s` routed to experts on rank `d`,
/// the number of dispatch messages from `s` to `d` and of combine messages back), the
/// per-expert load `m_e` (DeepEP's `masked_m`), and the tokens of each rank.
public struct LayerRouting: Sendable {
    public struct MicroBatchRouting: Sendable {
        /// `pairCounts[s * N + d] = n(s, d)`.
        public var pairCounts: [Int32]
        /// `expertLoad[e] = m_e`, tokens received by physical expert `e`.
        public var expertLoad: [Int32]
        /// Tokens of each rank in this micro-batch.
        public var tokens: [Int32]
        /// `uniquePairCounts[s * N + d]`: tokens of `s` with at least one expert on `d`, the
        /// message count of normal-mode kernels (which send a token once per rank). Empty
        /// unless requested.
        public var uniquePairCounts: [Int32]
    }

    public var microBatches: [MicroBatchRouting]
}

/// Decides which experts each token selects, deterministically from the scenario's seed.
///
/// `balanced`: tokens are numbered globally, `g = T_0 + ... + T_(r-1) + t`, and token `g`
/// picks experts `(g*k + j) mod E` for `j < k`; every expert is equally loaded when
/// `k * sum(T)` is a multiple of `E`. `uniform`: each token draws `k` distinct experts
/// uniformly at random from a generator seeded by (seed, step, layer, rank), so routing
/// changes per layer and step and does not depend on evaluation order.
public struct RoutingGenerator: Sendable {
    public let kind: RoutingKind
    public let seed: UInt64
    public let workload: Workload
    public let tokensPerRank: [Int]
    public let experts: Int
    public let topK: Int
    public let placement: [Int32]
    private let globalOffset: [Int]

    public init(workload: Workload, model: MoEModel) {
        kind = workload.routing
        seed = workload.seed
        self.workload = workload
        tokensPerRank = workload.tokensPerRank
        experts = model.experts
        topK = model.topK
        placement = model.placement
        var offsets: [Int] = []
        var sum = 0
        for t in tokensPerRank {
            offsets.append(sum)
            sum += t
        }
        globalOffset = offsets
    }

    /// Calls `body(token, expert)` for every selection of `rank` in (step, layer), tokens in order.
    public func forEachSelection(rank: Int, step: Int, layer: Int, _ body: (Int, Int) -> Void) {
        let count = tokensPerRank[rank]
        switch kind {
        case .balanced:
            let base = globalOffset[rank]
            for t in 0..<count {
                let first = ((base + t) % experts) * topK % experts
                for j in 0..<topK {
                    var e = first + j
                    if e >= experts { e -= experts }
                    body(t, e)
                }
            }
        case .uniform:
            var rng = SplitMix64(seed: SplitMix64.mix(seed, UInt64(step), UInt64(layer), UInt64(rank)))
            var chosen = [Int](repeating: 0, count: topK)
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

    /// The routing of one layer of one step, split into `microBatches`; with
    /// `uniquePairs`, also the per-(token, rank) counts of normal-mode kernels.
    public func route(step: Int, layer: Int, microBatches: Int, uniquePairs: Bool = false) -> LayerRouting {
        let n = tokensPerRank.count
        var result: [LayerRouting.MicroBatchRouting] = (0..<microBatches).map { _ in
            .init(
                pairCounts: [Int32](repeating: 0, count: n * n),
                expertLoad: [Int32](repeating: 0, count: experts),
                tokens: [Int32](repeating: 0, count: n),
                uniquePairCounts: uniquePairs ? [Int32](repeating: 0, count: n * n) : [])
        }
        // The last token (global number) counted towards each destination rank.
        var lastToken = [Int](repeating: -1, count: uniquePairs ? n : 0)
        for s in 0..<n {
            let splitAt = workload.tokenRange(rank: s, microBatch: .a, of: microBatches).upperBound
            for m in 0..<microBatches {
                result[m].tokens[s] = Int32(workload.tokenRange(rank: s, microBatch: MicroBatch(rawValue: UInt8(m))!, of: microBatches).count)
            }
            let row = s * n
            let base = globalOffset[s]
            forEachSelection(rank: s, step: step, layer: layer) { t, e in
                let m = t < splitAt ? 0 : 1
                let d = Int(placement[e])
                result[m].pairCounts[row + d] += 1
                result[m].expertLoad[e] += 1
                if uniquePairs && lastToken[d] != base + t {
                    lastToken[d] = base + t
                    result[m].uniquePairCounts[row + d] += 1
                }
            }
        }
        return LayerRouting(microBatches: result)
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
