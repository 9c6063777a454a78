import EventCore
import Testing

@testable import EPSim

/// Contract §9, computed here independently of the engine: one layer, schedule `none`,
/// ideal network, fixed durations. The engine must match to the picosecond.
struct ClosedForm {
    let text: ScenarioText

    /// `n(s,d)` for balanced routing, straight from the formula `(g*k + j) mod E`.
    func pairCounts() -> [[Int]] {
        let n = text.ranks
        var counts = [[Int]](repeating: [Int](repeating: 0, count: n), count: n)
        var g = 0
        for s in 0..<n {
            for _ in 0..<text.tokens[s] {
                for j in 0..<text.topK {
                    let e = (g * text.topK + j) % text.experts
                    counts[s][e / (text.experts / n)] += 1
                }
                g += 1
            }
        }
        return counts
    }

    func at(_ xs: [Double], _ r: Int) -> SimTime { .us(xs.count == 1 ? xs[0] : xs[r]) }

    func flight(_ bytes: Int, from s: Int, to d: Int) -> SimTime {
        let nvlink = s == d || (text.nvlinkForLL && s / text.gpusPerNode == d / text.gpusPerNode)
        let (gbps, lat) = nvlink ? (text.nvlinkGBps, text.nvlinkLatency) : (text.rdmaGBps, text.rdmaLatency)
        var t = SimTime.us(lat) + SimTime.transfer(bytes: Int64(bytes), gigabytesPerSecond: gbps)
        if text.fence && !nvlink && bytes > 0 { t += .us(2 * lat) }
        return t
    }

    /// Rank end times `E_s`, and dispatch recv ends `R_d`.
    func solve() -> (end: [SimTime], recv: [SimTime]) {
        let n = text.ranks
        let h = text.hidden
        let dispatchBytes = text.dtype == "fp8" ? 16 + h + h / 128 * 4 : 16 + 2 * h
        let combineBytes = 2 * h
        let c = pairCounts()
        let a = (0..<n).map { at(text.attn0, $0) + at(text.attn1, $0) + at(text.shared, $0) }
        let sd = (0..<n).map { s in SimTime.us(text.sendFixed) + SimTime(picos: SimTime.us(text.perMessage).picos * Int64(c[s].reduce(0, +))) }
        var r = [SimTime](repeating: .zero, count: n)
        for d in 0..<n {
            var latest = a[d] + sd[d]
            var bytesIn = 0
            for s in 0..<n {
                latest = max(latest, a[s] + sd[s] + flight(c[s][d] * dispatchBytes, from: s, to: d))
                bytesIn += c[s][d] * dispatchBytes
            }
            r[d] = latest + .us(text.recvFixed) + SimTime.transfer(bytes: Int64(bytesIn), gigabytesPerSecond: text.dispatchCopy)
        }
        let x = (0..<n).map { d in
            r[d] + at(text.gemm, d) + .us(text.sendFixed) + SimTime(picos: SimTime.us(text.perMessage).picos * Int64((0..<n).map { c[$0][d] }.reduce(0, +)))
        }
        let e = (0..<n).map { s in
            var latest = x[s]
            for d in 0..<n { latest = max(latest, x[d] + flight(c[s][d] * combineBytes, from: d, to: s)) }
            let q = SimTime.us(text.recvFixed) + SimTime.transfer(bytes: Int64(text.tokens[s] * text.topK * combineBytes), gigabytesPerSecond: text.combineCopy)
            return latest + q
        }
        return (e, r)
    }
}

@Suite("Contract §9 closed forms")
struct ClosedFormTests {
    static let cases: [(String, ScenarioText)] = {
        var out: [(String, ScenarioText)] = []
        for (n, gpn, experts) in [(2, 1, 16), (4, 2, 32), (16, 8, 256)] {
            var base = ScenarioText()
            base.ranks = n
            base.gpusPerNode = gpn
            base.experts = experts
            base.tokens = Array(repeating: 128, count: n)
            out.append(("balanced \(n)", base))
            var batch = base
            batch.tokens = (0..<n).map { $0 == 0 ? 256 : ($0 % 3 == 0 ? 32 : 128) }
            out.append(("batch imbalance \(n)", batch))
            var attn = base
            attn.attn1 = (0..<n).map { $0 == n - 1 ? 150 : 60 }
            out.append(("attention imbalance \(n)", attn))
            var mix = base
            mix.tokens = (0..<n).map { [96, 7, 128, 200][$0 % 4] }
            mix.attn0 = (0..<n).map { 20 + Double($0) * 1.5 }
            mix.gemm = (0..<n).map { 40 + Double($0 % 5) * 3.25 }
            mix.fence = true
            out.append(("mix \(n)", mix))
            var zero = base
            zero.tokens = (0..<n).map { $0 == 1 ? 0 : 128 }
            zero.attn1 = (0..<n).map { $0 == 1 ? 300 : 60 }
            out.append(("zero-token rank \(n)", zero))
            var bf16 = mix
            bf16.dtype = "bf16"
            bf16.nvlinkForLL = false
            out.append(("bf16, no NVLink \(n)", bf16))
        }
        return out
    }()

    @Test("engine matches the recurrence exactly", arguments: cases)
    func matches(_ name: String, _ text: ScenarioText) throws {
        let result = try Simulation.run(text.scenario())
        let (end, recv) = ClosedForm(text: text).solve()
        for r in 0..<text.ranks {
            #expect(result.rankStep(rank: r, step: 0).end == end[r], "\(name): rank \(r) end")
            let dispatch = result.kernels.first { $0.rank == Int32(r) && $0.kind == .dispatch }!
            #expect(dispatch.end == recv[r], "\(name): rank \(r) dispatch recv end")
        }
        #expect(result.stepLatency == end.max()!)
    }

    @Test("a zero-token rank still gates everyone through its count messages")
    func zeroTokenRankGates() throws {
        var text = ScenarioText()
        text.ranks = 4
        text.gpusPerNode = 2
        text.experts = 32
        text.tokens = [128, 0, 128, 128]
        text.attn1 = [60, 400, 60, 60]  // the empty rank is late
        let result = try Simulation.run(text.scenario())
        for r in [0, 2, 3] {
            let d = result.kernels.first { $0.rank == Int32(r) && $0.kind == .dispatch }!
            #expect(d.blocker == 1, "rank \(r) waits for the empty rank")
            #expect(d.wait > .us(300))
        }
    }

    @Test("balanced ranks end together and wait no longer than the flight time")
    func balancedConsequence() throws {
        var text = ScenarioText()
        text.ranks = 4
        text.gpusPerNode = 4
        text.experts = 32
        text.tokens = [64, 64, 64, 64]
        let result = try Simulation.run(text.scenario())
        let ends = (0..<4).map { result.rankStep(rank: $0, step: 0).end }
        #expect(Set(ends).count == 1)
        let (endForm, _) = ClosedForm(text: text).solve()
        #expect(ends[0] == endForm[0])
    }

    @Test("batch imbalance: a light rank ends with its own combine arrival, the step with the heaviest")
    func batchImbalanceConsequence() throws {
        let text = ClosedFormTests.cases.first { $0.0 == "batch imbalance 16" }!.1
        let result = try Simulation.run(text.scenario())
        let ends = (0..<16).map { result.rankStep(rank: $0, step: 0).end }
        // Every dispatch recv ends at the same arrival of the heaviest sender (same copy cost aside).
        let heavy = result.kernels.filter { $0.kind == .dispatch && $0.wait > .zero }.map(\.blocker)
        #expect(Set(heavy) == [0])
        // Light ranks (32 tokens) finish earlier than the step.
        #expect(ends[3] < ends.max()!)
    }
}
