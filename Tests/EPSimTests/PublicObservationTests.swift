import EventCore
import Foundation
import Testing

@testable import EPSim

/// Public measurements the network model must reproduce in direction and rough size
/// (`Scenarios/observations/`; figures in `docs/model.md`, "Public observations").
@Suite("Public observations of real fabrics")
struct PublicObservationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func run(_ file: String, _ overrides: [String]) throws -> RunResult {
        let parsed = overrides.map { o in
            let parts = o.split(separator: "=", maxSplits: 1).map(String.init)
            return Override(keyPath: parts[0], value: parts[1])
        }
        return try Simulation.run(try Scenario.load(path: root.appendingPathComponent(file).path, overrides: parsed))
    }

    static func durations(_ r: RunResult, _ kind: KernelKind) -> [Double] {
        r.kernels.filter { $0.kind == kind }.map(\.duration.micros)
    }

    /// tenstorrent/tt-metal issue 56304: combine time rose with the busiest destination's
    /// load over the mean (r = 0.97), dispatch much less. Here: the slowest COMBINE at
    /// least doubles from a balanced layer to a hot expert at max/mean near 2, while the SEND
    /// part of every dispatch (what each sender does with an equal share of tokens) moves by
    /// under a tenth: the hot rank's load is paid where it sends, in the combine.
    @Test("a hot destination: combine grows with the busiest rank's load, dispatch sends do not")
    func hotDestination() throws {
        let file = "Scenarios/observations/hot-destination-ep8.yaml"
        let balanced = try Self.run(file, ["workload.routing.factor=1"])
        let hot = try Self.run(file, ["workload.routing.factor=16"])
        func loadRatio(_ r: RunResult) -> Double {
            let received = r.kernels.filter { $0.kind == .dispatch }.map { Double($0.bytesIn) }
            return received.max()! / (received.reduce(0, +) / Double(received.count))
        }
        let ratio = loadRatio(hot) / loadRatio(balanced)
        let combineGrowth = Self.durations(hot, .combine).max()! / Self.durations(balanced, .combine).max()!
        #expect(ratio > 1.7, "the hot expert concentrates load: max/mean grew \(ratio)x")
        #expect(combineGrowth >= ratio, "combine grows at least in proportion: \(combineGrowth)x for \(ratio)x")
        // The dispatch SEND part: every rank sends the same number of selections.
        let sendSpread = hot.kernels.filter { $0.kind == .dispatch }.map { Double($0.bytesOut) }
        #expect(sendSpread.max()! / sendSpread.min()! < 1.1)
    }

    /// uccl-project/uccl pull request 745: per-write posting cost is real and adds to the
    /// transfer. At 8.8 M writes/s (114 ns each) the mean dispatch lasts the RDMA writes of a
    /// rank times 114 ns longer than with free writes, within 15%: it does not hide under the
    /// bytes' time. A quarter of the writes (per-expert grouping at this size) gives back
    /// three quarters of that.
    @Test("the NIC's message rate adds to the dispatch, and fewer writes give it back")
    func messageRateAdds() throws {
        let file = "Scenarios/observations/efa-writes-ep16.yaml"
        func meanDispatch(_ rate: String) throws -> Double {
            let d = Self.durations(try Self.run(file, ["network.rdma.message_rate_mps=\(rate)"]), .dispatch)
            return d.reduce(0, +) / Double(d.count)
        }
        let slow = try meanDispatch("8.8")
        let grouped = try meanDispatch("35.2")
        let free = try meanDispatch("infinite")
        // RDMA writes per rank: 128 tokens x 8 selections, half of them to the other node.
        let writes = 128.0 * 8 * 8 / 16
        let perWrite = 1 / 8.8
        #expect(abs((slow - free) / (writes * perWrite) - 1) < 0.15, "added \(slow - free) us for \(writes) writes")
        #expect(abs((slow - grouped) / (0.75 * writes * perWrite) - 1) < 0.15, "grouping saved \(slow - grouped) us")
    }
}
