import Foundation
import Testing

@testable import EPSim

@Suite("Routing")
struct RoutingTests {
    func generator(_ kind: RoutingKind, tokens: [Int], experts: Int, topK: Int, seed: UInt64 = 7) -> RoutingGenerator {
        let model = MoEModel(
            hidden: 7168, experts: experts, topK: topK, moeLayers: 1, denseLayers: 0, dispatchPrecision: .fp8,
            expertPlacement: .contiguous(experts: experts, ranks: tokens.count))
        return RoutingGenerator(workload: Workload(tokensPerRank: tokens, routing: kind, seed: seed), model: model)
    }

    @Test("balanced routing loads every expert equally when k * total is a multiple of E")
    func balancedExact() {
        let g = generator(.balanced, tokens: [128, 32, 96, 0], experts: 32, topK: 8)
        let routing = g.route(step: 0, layer: 0, microBatches: 1)
        // 256 tokens * 8 = 2048 selections over 32 experts = 64 each.
        #expect(routing.microBatches[0].expertLoad.allSatisfy { $0 == 64 })
    }

    @Test("each token picks k distinct experts; uniform picks are roughly uniform")
    func uniformDistinct() {
        let g = generator(.uniform, tokens: [400, 400], experts: 16, topK: 6)
        var perExpert = [Int](repeating: 0, count: 16)
        for r in 0..<2 {
            var current = -1
            var seen: Set<Int> = []
            g.forEachLogicalSelection(rank: r, step: 0, layer: 0) { t, e in
                if t != current { #expect(seen.count == (current < 0 ? 0 : 6)); current = t; seen = [] }
                #expect(seen.insert(e).inserted, "token \(t) picked expert \(e) twice")
                perExpert[e] += 1
            }
        }
        // 4800 selections over 16 experts: chi-square with 15 dof; 37.7 is its 0.1% tail.
        let expected = 4800.0 / 16
        let chi2 = perExpert.map { pow(Double($0) - expected, 2) / expected }.reduce(0, +)
        #expect(chi2 < 37.7)
    }

    @Test("same seed gives the same routing; another layer or step gives another")
    func seeded() {
        let a = generator(.uniform, tokens: [64, 64], experts: 16, topK: 4, seed: 3)
        let b = generator(.uniform, tokens: [64, 64], experts: 16, topK: 4, seed: 3)
        #expect(
            a.route(step: 1, layer: 2, microBatches: 2).microBatches[1].pairCounts == b.route(step: 1, layer: 2, microBatches: 2).microBatches[1].pairCounts)
        #expect(
            a.route(step: 0, layer: 0, microBatches: 1).microBatches[0].expertLoad != a.route(step: 0, layer: 1, microBatches: 1).microBatches[0].expertLoad)
    }

    @Test("micro-batch A holds the first ceil(T/2) tokens")
    func split() {
        let w = Workload(tokensPerRank: [7, 3], routing: .balanced, seed: 0)
        #expect(w.tokenRange(rank: 0, microBatch: .a, of: 2) == 0..<4)
        #expect(w.tokenRange(rank: 0, microBatch: .b, of: 2) == 4..<7)
        #expect(w.tokenRange(rank: 0, microBatch: .a, of: 1) == 0..<7)
        let explicit = Workload(tokensPerRank: [7, 3], routing: .balanced, seed: 0, microBatchATokens: [2, 3])
        #expect(explicit.tokenRange(rank: 0, microBatch: .b, of: 2) == 2..<7)
        #expect(explicit.tokenRange(rank: 1, microBatch: .b, of: 2).isEmpty)
        let g = generator(.balanced, tokens: [7, 3], experts: 4, topK: 2)
        let r = g.route(step: 0, layer: 0, microBatches: 2)
        #expect(r.microBatches[0].tokens == [4, 2])
        #expect(r.microBatches[1].tokens == [3, 1])
        #expect(r.microBatches[0].pairCounts.reduce(0, +) == 12)
        #expect(r.microBatches[1].pairCounts.reduce(0, +) == 8)
    }
}
