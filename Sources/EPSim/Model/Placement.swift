/// Which physical expert slots hold which logical experts, and on which ranks.
///
/// `E` logical routed experts live in `P >= E` physical slots, `P / N` per rank (DeepEP
/// gives every rank the same number). Slot `p` is on rank `p / (P / N)` unless a
/// placement list says otherwise; `slotExpert[p]` is the logical expert it holds.
public struct ExpertPlacement: Sendable, Equatable {
    public var slotExpert: [Int32]
    /// Rank of each slot.
    public var slotRank: [Int32]
    /// Slots holding each logical expert, ascending.
    public var replicas: [[Int32]]

    public init(slotExpert: [Int32], slotRank: [Int32], experts: Int) {
        self.slotExpert = slotExpert
        self.slotRank = slotRank
        var reps = [[Int32]](repeating: [], count: experts)
        for (p, e) in slotExpert.enumerated() { reps[Int(e)].append(Int32(p)) }
        replicas = reps
    }

    /// Slot `p` holds expert `p mod E`; rank `r` has slots `r*P/N ..< (r+1)*P/N`. With
    /// `P = E` this is DeepEP's layout: rank `r` hosts experts `r*E/N ..< (r+1)*E/N`.
    public static func contiguous(experts: Int, ranks: Int, physical: Int? = nil) -> ExpertPlacement {
        let p = physical ?? experts
        return ExpertPlacement(
            slotExpert: (0..<p).map { Int32($0 % experts) }, slotRank: MoEModel.contiguousPlacement(experts: p, ranks: ranks),
            experts: experts)
    }

    /// Expected tokens on each rank when expert `e` receives `load[e]` selections, split
    /// evenly among its replicas.
    public func expectedRankLoad(_ load: [Double], ranks: Int) -> [Double] {
        var out = [Double](repeating: 0, count: ranks)
        for (p, e) in slotExpert.enumerated() { out[Int(slotRank[p])] += load[Int(e)] / Double(replicas[Int(e)].count) }
        return out
    }

    /// The greedy balancer (the EPLB idea: minimise the maximum expected load a rank receives).
    ///
    /// 1. Every expert gets one slot; each of the `P - E` extra slots goes to the expert with
    ///    the highest load per replica (ties: lowest expert).
    /// 2. Replicas, heaviest first, go to the rank with the least load so far that has a
    ///    free slot, preferring ranks that do not hold that expert yet (ties: lowest rank).
    /// 3. If the contiguous layout of the same slots happens to have a lower maximum, it is
    ///    kept instead: the balancer never makes the maximum worse.
    public static func greedy(load: [Double], physical: Int, ranks: Int) -> ExpertPlacement {
        let lpt = longestProcessingTime(load: load, physical: physical, ranks: ranks)
        let contiguous = contiguous(experts: load.count, ranks: ranks, physical: physical)
        let worst = { (p: ExpertPlacement) in p.expectedRankLoad(load, ranks: ranks).max() ?? 0 }
        return worst(lpt) <= worst(contiguous) ? lpt : contiguous
    }

    static func longestProcessingTime(load: [Double], physical: Int, ranks: Int) -> ExpertPlacement {
        let experts = load.count
        var count = [Int](repeating: 1, count: experts)
        for _ in 0..<(physical - experts) {
            var best = 0
            for e in 1..<experts where load[e] / Double(count[e]) > load[best] / Double(count[best]) { best = e }
            count[best] += 1
        }
        var items: [(expert: Int, load: Double)] = []
        for e in 0..<experts { for _ in 0..<count[e] { items.append((e, load[e] / Double(count[e]))) } }
        items.sort { $0.load != $1.load ? $0.load > $1.load : $0.expert < $1.expert }
        let perRank = physical / ranks
        var rankLoad = [Double](repeating: 0, count: ranks)
        var free = [Int](repeating: perRank, count: ranks)
        var holds = [Set<Int>](repeating: [], count: ranks)
        var slotExpert = [Int32](repeating: 0, count: physical)
        var nextSlot = (0..<ranks).map { $0 * perRank }
        for item in items {
            var best = -1
            for preferNew in [true, false] where best < 0 {
                for r in 0..<ranks where free[r] > 0 && (!preferNew || !holds[r].contains(item.expert)) {
                    if best < 0 || rankLoad[r] < rankLoad[best] { best = r }
                }
            }
            rankLoad[best] += item.load
            free[best] -= 1
            holds[best].insert(item.expert)
            slotExpert[nextSlot[best]] = Int32(item.expert)
            nextSlot[best] += 1
        }
        return ExpertPlacement(slotExpert: slotExpert, slotRank: (0..<physical).map { Int32($0 / perRank) }, experts: experts)
    }
}
