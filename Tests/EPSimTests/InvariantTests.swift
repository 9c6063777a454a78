import EventCore
import Testing

@testable import EPSim

/// Random small scenarios from a seeded generator: the invariants of the model hold on all.
enum RandomScenarios {
    static func make(_ seed: UInt64) -> ScenarioText {
        var g = SplitMix64(seed: seed)
        var t = ScenarioText()
        t.ranks = [1, 2, 3, 4, 6, 8][g.next(below: 6)]
        t.gpusPerNode = [1, 2, 4, 8][g.next(below: 4)]
        t.experts = t.ranks * (1 + g.next(below: 4))
        t.topK = 1 + g.next(below: t.experts)
        t.topK = min(t.topK, 8)
        t.hidden = 128 * (1 + g.next(below: 8))
        t.moeLayers = 1 + g.next(below: 3)
        t.steps = 1 + g.next(below: 2)
        t.tokens = (0..<t.ranks).map { _ in g.next(below: 5) == 0 ? 0 : g.next(below: 48) }
        t.routing = g.next(below: 2) == 0 ? "balanced" : "uniform"
        t.seed = g.next(below: 1000)
        t.schedule = ScheduleSpec.presetNames[g.next(below: ScheduleSpec.presetNames.count)]
        t.dtype = g.next(below: 2) == 0 ? "fp8" : "bf16"
        func durations() -> [Double] { (0..<t.ranks).map { _ in Double(g.next(below: 8000)) / 100 } }
        t.attn0 = durations()
        t.attn1 = durations()
        t.shared = durations()
        t.gemm = durations()
        t.sendFixed = Double(g.next(below: 1000)) / 100
        t.perMessage = Double(g.next(below: 100)) / 1000
        t.recvFixed = Double(g.next(below: 500)) / 100
        t.nvlinkLatency = Double(g.next(below: 400)) / 100
        t.rdmaLatency = Double(g.next(below: 800)) / 100
        t.nvlinkForLL = g.next(below: 2) == 0
        t.fence = g.next(below: 3) == 0
        t.network = NetworkKind.allCases[g.next(below: NetworkKind.allCases.count)].rawValue
        if g.next(below: 3) == 0 {
            let divisors = [1, 2, 4, 8].filter { t.gpusPerNode % $0 == 0 }
            t.nicsPerNode = divisors[g.next(below: divisors.count)]
        }
        return t
    }

    static let seeds: [UInt64] = Array(1...60)
}

@Suite("Model invariants on random scenarios")
struct InvariantTests {
    @Test("kernels never overlap, RECVs end after their last arrival, bytes and selections are conserved", arguments: RandomScenarios.seeds)
    func invariants(seed: UInt64) throws {
        let text = RandomScenarios.make(seed)
        let scenario = try text.scenario()
        let result = try Simulation.run(scenario, options: .init(timeline: .full, recordFlows: true))
        let n = text.ranks
        let program = try Program(spec: scenario.schedule, denseLayers: 0, moeLayers: text.moeLayers)
        let ops = program.commOpsPerStep
        #expect(result.kernels.count == n * text.steps * program.instructions.count)
        #expect(result.flowCount == n * n * ops * text.steps, "every operation (counts, barriers, data) sends one flow to every rank")
        #expect(result.flows.count == result.flowCount, "every flow delivered exactly once")
        var seen = Set<[Int32]>()
        for f in result.flows { #expect(seen.insert([f.flow.operation, f.flow.source, f.flow.destination]).inserted, "delivered once") }

        // What each operation of a step is: the instruction that receives it (its data op)
        // or the count exchange before a normal-mode dispatch.
        var dataOp: [Int: Instruction] = [:]
        for instr in program.instructions where instr.commOp >= 0 && (instr.kind.receives || instr.kind == .barrier) { dataOp[Int(instr.commOp)] = instr }
        // Latest arrival per (destination, operation).
        var latest: [Int: SimTime] = [:]
        var bytesTo = [Int64](repeating: 0, count: n)
        var bytesFrom = [Int64](repeating: 0, count: n)
        for f in result.flows {
            let key = Int(f.flow.destination) * 1_000_000 + Int(f.flow.operation)
            latest[key] = max(latest[key] ?? .zero, f.arrival)
            #expect(f.arrival >= f.posted, "a flow never arrives before its control message leaves")
            bytesTo[Int(f.flow.destination)] += f.flow.bytes
            bytesFrom[Int(f.flow.source)] += f.flow.bytes
        }
        for r in 0..<n {
            let mine = result.kernels.filter { $0.rank == Int32(r) }
            for stream in StreamKind.allCases {
                let onStream = mine.filter { $0.stream == stream }
                for (a, b) in zip(onStream, onStream.dropFirst()) {
                    #expect(b.start >= a.end, "rank \(r) \(stream): \(b.kind) starts before \(a.kind) ends")
                }
            }
            // Every receiving kernel ends after the last arrival of its operation.
            let receivers = mine.filter { $0.kind.receives || $0.kind == .barrier }
            #expect(receivers.count == dataOp.count * text.steps)
            for k in receivers {
                let instr = dataOp.values.first { $0.kind == k.kind && $0.layer == k.layer && $0.microBatch == k.microBatch }!
                let arrival = latest[r * 1_000_000 + Int(k.step) * ops + Int(instr.commOp)]!
                #expect(k.end >= arrival, "rank \(r) \(k.kind): RECV ends before its last arrival")
                if k.kind.receives { #expect(k.lastArrival == arrival) }
                #expect(k.wait >= .zero && k.end >= k.start)
            }
            #expect(mine.filter { $0.kind.sends }.map(\.bytesOut).reduce(0, +) == bytesFrom[r], "bytes sent by rank \(r)")
            #expect(mine.filter { $0.kind.receives }.map(\.bytesIn).reduce(0, +) == bytesTo[r], "bytes received by rank \(r)")
        }
        // Selections: in low-latency mode every dispatch operation carries sum(T_mb) * k
        // messages (normal mode sends each token once per destination rank), and in both
        // modes its combine returns exactly the same (s, d) counts in the other direction.
        let m = scenario.model
        let dispatched = result.kernels.filter { $0.kind.isDispatchSide && $0.kind.sends }.map(\.bytesOut).reduce(0, +)
        let combined = result.kernels.filter { !$0.kind.isDispatchSide && $0.kind.sends }.map(\.bytesOut).reduce(0, +)
        if program.mode == .lowLatency {
            let totalSelections = text.tokens.reduce(0, +) * text.topK * text.moeLayers * text.steps
            #expect(dispatched == Int64(totalSelections) * m.dispatchMessageBytes)
            #expect(combined == Int64(totalSelections) * m.combineMessageBytes)
        } else {
            #expect(dispatched / m.dispatchMessageBytes == combined / m.combineMessageBytes)
        }
        var pairBack: [Int: Int64] = [:]
        for f in result.flows {
            guard let instr = dataOp[Int(f.flow.operation) % ops], instr.kind != .barrier else { continue }
            let isDispatch = instr.kind.isDispatchSide
            let (s, d) = isDispatch ? (f.flow.source, f.flow.destination) : (f.flow.destination, f.flow.source)
            pairBack[Int(s) * 64 + Int(d), default: 0] += isDispatch ? Int64(f.flow.messages) : -Int64(f.flow.messages)
        }
        #expect(pairBack.values.allSatisfy { $0 == 0 }, "combine returns every dispatched selection to its source")
    }

    @Test("the random scenarios cover every network model, schedule preset and NIC layout")
    func coverage() {
        let texts = RandomScenarios.seeds.map(RandomScenarios.make)
        #expect(Set(texts.map(\.network)) == Set(NetworkKind.allCases.map(\.rawValue)))
        #expect(Set(texts.map(\.schedule)) == Set(ScheduleSpec.presetNames))
        #expect(texts.contains { $0.nicsPerNode != nil && $0.nicsPerNode! < $0.gpusPerNode && $0.ranks > $0.nicsPerNode! })
    }

    @Test("the same scenario and seed give identical results", arguments: [3, 17, 29] as [UInt64])
    func determinism(seed: UInt64) throws {
        let scenario = try RandomScenarios.make(seed).scenario()
        let a = try Simulation.run(scenario, options: .init(timeline: .full, recordFlows: true))
        let b = try Simulation.run(scenario, options: .init(timeline: .full, recordFlows: true))
        #expect(a.kernels == b.kernels)
        #expect(a.flows == b.flows)
        #expect(a.rankSteps == b.rankSteps)
    }

    @Test("a summary timeline computes the same per-rank results as a full one", arguments: [5, 11] as [UInt64])
    func summaryMatchesFull(seed: UInt64) throws {
        let scenario = try RandomScenarios.make(seed).scenario()
        let full = try Simulation.run(scenario, options: .init(timeline: .full))
        let summary = try Simulation.run(scenario, options: .init(timeline: .summary))
        #expect(summary.kernels.isEmpty)
        #expect(full.rankSteps == summary.rankSteps)
    }

    @Test("no rank finishes a step before it could have alone, and waits add up")
    func waitAccounting() throws {
        var checked = 0
        for seed in RandomScenarios.seeds where checked < 10 {
            let scenario = try RandomScenarios.make(seed).scenario()
            // One stream only (prefill's comm stream runs beside the compute stream).
            guard try Program(spec: scenario.schedule, denseLayers: 0, moeLayers: scenario.model.moeLayers).streams[1].isEmpty else { continue }
            checked += 1
            let result = try Simulation.run(scenario)
            for rs in result.rankSteps {
                let mine = result.kernels.filter { $0.rank == rs.rank && $0.step == rs.step }
                let total = mine.map(\.duration).reduce(SimTime.zero, +)
                #expect(rs.latency == total, "one stream, no gaps: latency is the sum of kernel durations")
                #expect(rs.busy + rs.wait == total)
            }
        }
        #expect(checked == 10)
    }
}
