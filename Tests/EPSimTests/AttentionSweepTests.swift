import EventCore
import Foundation
import Testing

@testable import EPSim

/// `Scenarios/attention-sweep/`: DeepSeek-V3 decode at EP 128 with TBO, ATTN1 set to X us
/// per micro-batch (docs/answers.md, question 7). Behaviour, not pinned numbers: the checks
/// must hold whatever the `ports` network's discipline becomes.
@Suite("Attention sweep at EP 128 (TBO)")
struct AttentionSweepTests {
    static let xs: [Double] = [108, 130, 164.3, 200]

    static func text(_ x: Double) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let name = x == x.rounded() ? String(Int(x)) : String(x)
        return try String(contentsOf: root.appendingPathComponent("Scenarios/attention-sweep/attn1-\(name).yaml"), encoding: .utf8)
    }

    /// The shipped file, on its own (`ports`) network or on `ideal`.
    static func run(_ x: Double, ideal: Bool) throws -> RunResult {
        let yaml = try text(x) + (ideal ? "\nnetwork: {model: ideal}\n" : "")
        let scenario = try Scenario.parse(yaml: yaml, file: "attn1-\(x).yaml")
        guard case let .perMicroBatch(a, b) = scenario.costs.attn1 else {
            Issue.record("attn1-\(x): ATTN1 should be given per micro-batch")
            return try Simulation.run(scenario)
        }
        #expect((a + b).allSatisfy { $0 == .us(x) }, "attn1-\(x): ATTN1 should be \(x) us for both micro-batches")
        return try Simulation.run(scenario)
    }

    /// ATTN1 kernels on the step's critical path, and the combine flights on it.
    static func path(_ r: RunResult) throws -> (attn1: Int, combineFlights: Int) {
        let path = try #require(CriticalPath(r))
        #expect(path.isContiguous && path.length == r.stepLatency)
        return (
            path.links.filter { $0.kind == .kernel && $0.kernel.kind == .attn1 }.count,
            path.links.filter { $0.kind == .message && $0.kernel.kind == .sendCombine }.count
        )
    }

    @Test("step latency grows with attention on both networks; on ideal by exactly 2 x layers x dX; on ports by no more")
    func monotoneAndClosedForm() throws {
        let layers = try Scenario.parse(yaml: try Self.text(108), file: "x.yaml").model.moeLayers
        let ports = try Self.xs.map { try Self.run($0, ideal: false) }
        let ideal = try Self.xs.map { try Self.run($0, ideal: true) }
        for i in 1..<Self.xs.count {
            let dX = SimTime.us(Self.xs[i]) - SimTime.us(Self.xs[i - 1])
            let dIdeal = ideal[i].stepLatency - ideal[i - 1].stepLatency
            let dPorts = ports[i].stepLatency - ports[i - 1].stepLatency
            // ideal: every ATTN1 of a rank's step is exposed (the combine flight is one flow's).
            #expect(dIdeal == dX.times(Int64(2 * layers)), "ideal: \(dIdeal) for dX \(dX)")
            #expect(dPorts >= .zero, "ports must not get faster with longer attention: \(Self.xs[i - 1]) -> \(Self.xs[i])")
            // ports: each ATTN1 of a window hides in the other micro-batch's combine flight as
            // far as it lasts, so the step grows by at most the ideal increase.
            #expect(dPorts <= dIdeal, "ports grew by \(dPorts), more than ideal's \(dIdeal)")
        }
        // At the smallest X attention is (partly) hidden on ports: it grows by less than ideal.
        #expect(ports[1].stepLatency - ports[0].stepLatency < ideal[1].stepLatency - ideal[0].stepLatency)
    }

    @Test("the mechanism: on ideal every ATTN1 is on the critical path; on ports at small X combine flights carry it instead, and exposed ATTN1s only grow with X")
    func criticalPath() throws {
        let layers = try Scenario.parse(yaml: try Self.text(108), file: "x.yaml").model.moeLayers
        var previous = -1
        for x in Self.xs {
            let ideal = try Self.path(try Self.run(x, ideal: true))
            #expect(ideal.attn1 == 2 * layers, "ideal, X = \(x): \(ideal.attn1) ATTN1 on the path")
            let ports = try Self.path(try Self.run(x, ideal: false))
            #expect(ports.attn1 >= previous, "ports, X = \(x): fewer ATTN1 on the path than at a smaller X")
            previous = ports.attn1
            if x == Self.xs[0] {
                #expect(ports.attn1 < 2 * layers, "ports, X = \(x): no ATTN1 hidden")
                #expect(ports.combineFlights > ports.attn1, "ports, X = \(x): the path should run through combine flights, not attention")
            }
        }
    }
}
