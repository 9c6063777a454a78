import EPSim
import EPSimStore
import Foundation
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// Counts elements by name and `class` attribute while checking that the document parses.
final class SVGCounter: NSObject, XMLParserDelegate {
    var counts: [String: Int] = [:]
    var lanes: Set<String> = []
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        counts[name, default: 0] += 1
        if let c = attributes["class"] { counts["." + c, default: 0] += 1 }
        if attributes["class"] == "lane" { lanes.insert("\(attributes["data-rank"] ?? "")/\(attributes["data-stream"] ?? "")") }
    }

    static func parse(_ svg: String) -> SVGCounter? {
        let counter = SVGCounter()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = counter
        return parser.parse() ? counter : nil
    }
}

@Suite("SVG pictures")
struct PlotTests {
    static func run(_ yaml: String) throws -> RunResult { try Simulation.run(try Scenario.parse(yaml: yaml, file: "p.yaml")) }

    @Test(
        "a timeline is well-formed XML with one lane per rank and stream and one rect per kernel", arguments: ["none", "deepseek-decode", "deepseek-prefill"])
    func timeline(schedule: String) throws {
        let r = try Self.run(
            "cluster: {ranks: 4, gpus_per_node: 2}\nmodel: {experts: 8, top_k: 2, moe_layers: 2}\nworkload: {tokens_per_rank: [64, 16, 32, 48]}\nschedule: \(schedule)\n"
        )
        let svg = Plot.timeline(r, title: "test <&>")
        let c = try #require(SVGCounter.parse(svg))
        let streams = schedule == "deepseek-prefill" ? 2 : 1
        #expect(c.lanes.count == 4 * streams)
        #expect(c.counts[".kernel"] == r.kernels.count)
        #expect(c.counts[".wait"] == r.kernels.filter { $0.wait > .zero }.count)
        #expect((c.counts[".critical"] ?? 0) > 0)
        // A selection of ranks draws only those.
        let some = try #require(SVGCounter.parse(Plot.timeline(r, ranks: [1, 3], title: "two")))
        #expect(some.lanes.count == 2 * streams)
        #expect(some.counts[".kernel"] == r.kernels.filter { $0.rank == 1 || $0.rank == 3 }.count)
        #expect(Plot.timeline(r, title: "test <&>") == svg, "the same run draws the same bytes")
    }

    @Test("above 16 ranks a band sums up every rank and the 3 slowest are drawn in full; the size follows the program, not the ranks")
    func manyRanks() throws {
        func run(_ n: Int) throws -> RunResult {
            try Self.run("cluster: {ranks: \(n)}\nmodel: {experts: 64, top_k: 2, moe_layers: 2}\nworkload: {tokens_per_rank: 8}\nschedule: deepseek-decode\n")
        }
        let r = try run(64)
        let svg = Plot.timeline(r, title: "64")
        let c = try #require(SVGCounter.parse(svg))
        #expect(c.lanes.count == Plot.slowestShown)
        let perRank = r.kernels.count / 64
        #expect(c.counts[".kernel"] == Plot.slowestShown * perRank)
        #expect(c.counts[".band"] == perRank, "one band bar per kernel of the program")
        let slowest = (0..<64).max { r.rankStep(rank: $0, step: 0).latency < r.rankStep(rank: $1, step: 0).latency }!
        #expect(c.lanes.contains("\(slowest)/compute"))
        let twice = Plot.timeline(try run(32), title: "64")
        #expect(Double(twice.utf8.count) / Double(svg.utf8.count) > 0.9 && Double(twice.utf8.count) / Double(svg.utf8.count) < 1.1)
        // Every rank when asked, condensed.
        let all = try #require(SVGCounter.parse(Plot.timeline(r, ranks: Array(0..<64), title: "all")))
        #expect(all.lanes.count == 64 && all.counts[".kernel"] == r.kernels.count)
    }

    @Test("--layers keeps only those layers' kernels; --window clips to the time given; the legend names only kinds drawn")
    func layersAndWindow() throws {
        let r = try Self.run("cluster: {ranks: 4}\nmodel: {experts: 8, top_k: 2, moe_layers: 3}\nworkload: {tokens_per_rank: 16}\nschedule: deepseek-decode\n")
        let one = try #require(SVGCounter.parse(Plot.timeline(r, layers: 1...1, title: "layer 1")))
        #expect(one.counts[".kernel"] == r.kernels.filter { $0.layer == 1 }.count)
        let end = r.kernels.map(\.end.micros).max()!
        let late = r.kernels.filter { $0.end.micros > end / 2 }.count
        let window = try #require(SVGCounter.parse(Plot.timeline(r, window: (end / 2)...end, title: "second half")))
        #expect(window.counts[".kernel"] == late)
        let legend = Plot.timeline(r, title: "legend")
        #expect(!legend.contains(">DENSE<") && !legend.contains(">BARRIER<") && legend.contains(">MLP<"))
        #expect(legend.contains(">wait (spinning)<") && legend.contains(">critical path<"))
        // A window past the step draws nothing: no kind, no wait, no critical path in the legend
        // (they used to be listed whatever was drawn).
        let empty = Plot.timeline(r, window: (end + 10)...(end + 20), title: "after")
        #expect(!empty.contains(">MLP<") && !empty.contains(">wait (spinning)<") && !empty.contains(">critical path<"))
    }

    @Test("comparison bars and sweep lines are well-formed, with a bar part per kind and a line per series")
    func barsAndLines() throws {
        let a = RunSummary(result: try Self.run("cluster: {ranks: 2}\nworkload: {tokens_per_rank: [128, 32]}\n"))
        let b = RunSummary(result: try Self.run("cluster: {ranks: 2}\nworkload: {tokens_per_rank: [128, 32]}\nschedule: deepseek-decode\n"))
        let bars = try #require(SVGCounter.parse(Plot.compare([("none", a), ("tbo", b)], title: "bars")))
        // attention, shared, gemm, exposed communication (no dense layer, launch gaps or barrier).
        #expect(bars.counts[".bar"] == 2 * 4)
        // Without overlap nothing is hidden; with TBO some communication is.
        #expect(bars.counts[".hidden"] == 1)
        for s in [a, b] {
            let row = s.per_rank.max { $0[.e2e] < $1[.e2e] }!
            let stack: [RankMetric] = [.attention, .shared, .dense, .gemm, .launchGaps, .exposedComm]
            #expect(abs(stack.map { row[$0] }.reduce(0, +) - s.step_latency_us) < 1e-6, "the stack is the step")
        }
        let csv = "point,x,schedule,step_latency_us\n0,1,none,10\n1,2,none,12\n2,1,tbo,9\n3,2,tbo,10\n"
        let lines = try #require(SVGCounter.parse(try Plot.lines(csv: csv, x: "x", y: "step_latency_us", series: "schedule", title: "lines")))
        #expect(lines.counts[".series"] == 2)
        #expect(throws: PlotError.self) { try Plot.lines(csv: csv, x: "nope", y: "step_latency_us", series: nil, title: "") }
    }
}

@Suite("Comparison bars add up")
struct CompareBarsTests {
    @Test("a run with barriers gets a barrier segment, and its bar reaches its step latency; one without has no such legend")
    func barrierSegment() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let barriers = RunSummary(result: try Simulation.run(try Scenario.load(path: root + "/Scenarios/batch-imbalance-barriers.yaml")))
        let plain = RunSummary(result: try Simulation.run(try Scenario.load(path: root + "/Scenarios/batch-imbalance.yaml")))
        let svg = Plot.compare([("barriers", barriers), ("plain", plain)], title: "t")
        #expect(svg.contains("barriers: barrier 8.000 us"))
        #expect(!Plot.compare([("plain", plain)], title: "t").contains(">barrier<"))
        // The slowest rank's segments sum to its e2e, which is the step latency here.
        let row = barriers.per_rank.max { $0[.e2e] < $1[.e2e] }!
        let parts: [RankMetric] = [.attention, .shared, .dense, .gemm, .dispatch, .combine, .barrier, .launchGaps]
        #expect(abs(parts.map { row[$0] }.reduce(0, +) - barriers.step_latency_us) < 1e-6)
    }
}

@Suite("Line charts of odd values")
struct LineChartValueTests {
    @Test("nan and inf rows are left out, values beyond 1e300 are refused, all-negative values still draw")
    func oddValues() throws {
        let svg = try Plot.lines(csv: "x,y\n1,2\n2,nan\n3,inf\n4,5\n", x: "x", y: "y", series: nil, title: "t")
        #expect(!svg.contains("nan") && !svg.contains("inf"))
        #expect(throws: PlotError.self) { try Plot.lines(csv: "x,y\n1,1e308\n2,3\n", x: "x", y: "y", series: nil, title: "t") }
        let negative = try Plot.lines(csv: "x,y\n1,-2\n2,-3\n", x: "x", y: "y", series: nil, title: "t")
        #expect(!negative.contains("nan"))
        #expect(throws: PlotError.self) { try Plot.lines(csv: "x,y\n1,nan\n", x: "x", y: "y", series: nil, title: "t") }
    }
}
