import Foundation
import Testing

/// Above 16 ranks `run`, `runs show` and `explain` summarise, fit a screen and name the same
/// culprit; rows and every link stay one option away.
@Suite("Reports at scale")
struct AtScaleTests {
    static let scenario = """
        name: at-scale
        hardware: h800
        cluster: {ranks: 32, gpus_per_node: 8}
        model: {preset: deepseek-v3, moe_layers: 4, dense_layers: 0}
        workload: {tokens_per_rank: 64, kv_length: 1024, routing: {kind: hot, experts: [5], factor: 30}, seed: 2}
        schedule: deepseek-decode
        """

    static func culprit(_ text: String) -> Substring? {
        text.split(separator: "\n").first { $0.hasPrefix("culprit:") || $0.hasPrefix("no single culprit:") }
    }

    @Test("summaries under 40 lines, one culprit everywhere, --all-ranks and --full give everything")
    func summaries() throws {
        let file = try CLI.temporaryFile(Self.scenario)
        let db = try StorageCommandTests.freshDatabase()
        let run = try CLI.run(["run", file, "--db", db])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.split(separator: "\n").count < 40)
        #expect(run.stdout.contains("32 ranks, summarised"))
        let show = try CLI.run(["runs", "show", "1", "--db", db])
        let explain = try CLI.run(["explain", "1", "--db", db])
        #expect(show.stdout.split(separator: "\n").count < 40 && explain.stdout.split(separator: "\n").count < 40)
        let line = try #require(Self.culprit(run.stdout))
        #expect(Self.culprit(show.stdout) == line && Self.culprit(explain.stdout) == line)
        // The hot expert's rank is the one the others wait for, and it stands out.
        #expect(line.hasPrefix("culprit: rank 0,"), "\(line)")

        let all = try CLI.run(["runs", "show", "1", "--db", db, "--all-ranks"])
        #expect(all.stdout.split(separator: "\n").filter { $0.first == " " && $0.contains(".") }.count >= 32)
        let some = try CLI.run(["run", file, "--no-store", "--ranks", "3,5"])
        #expect(some.stdout.contains("\n   3 ") && some.stdout.contains("\n   5 ") && !some.stdout.contains("\n   4 "))
        let layer = try CLI.run(["explain", "1", "--db", db, "--layers", "2"])
        #expect(layer.status == 0 && layer.stdout.contains("critical path, layers 2-2:"))
        let windowed = try CLI.run(["explain", "1", "--db", db, "--window", "0-50"])
        #expect(windowed.status == 0 && windowed.stdout.contains("critical path, 0-50 us:"))
        #expect(try CLI.run(["explain", "1", "--db", db, "--window", "50-0"]).status == 64)
        let empty = try CLI.run(["explain", "1", "--db", db, "--layers", "999"])
        #expect(empty.status == 64 && empty.stderr.contains("it passes layers"))
        let picture = URL(fileURLWithPath: db).deletingLastPathComponent().appendingPathComponent("n.svg").path
        let nothing = try CLI.run(["plot", "1", "--db", db, "--svg", picture, "--window", "1000000000-2000000000"])
        #expect(nothing.status == 64 && nothing.stderr.contains("absolute simulated time"))
        let full = try CLI.run(["explain", "1", "--db", db, "--full"])
        #expect(full.stdout.split(separator: "\n").count > 100 && full.stdout.contains("start_us"))
        let bad = try CLI.run(["run", file, "--no-store", "--ranks", "40"])
        #expect(bad.status == 64)
    }

    @Test("runs show refuses a rank the run lacks before printing; plot --compare draws runs kept without kernels")
    func storedWithoutKernels() throws {
        let file = try CLI.temporaryFile(Self.scenario)
        let db = try StorageCommandTests.freshDatabase()
        #expect(try CLI.run(["run", file, "--db", db, "--timeline", "summary"]).status == 0)
        #expect(try CLI.run(["run", file, "--db", db, "--timeline", "none"]).status == 0)
        // The header lines used to reach standard output before the error.
        let missing = try CLI.run(["runs", "show", "1", "--db", db, "--ranks", "99"])
        #expect(missing.status == 64 && missing.stdout.isEmpty, "\(missing.stdout)")
        // A summary-timeline run (what sweep stores) has the per-rank rows the bars need; it
        // used to be refused for having no kernels. A run kept with timeline none is refused.
        let svg = URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent("c.svg").path
        let bars = try CLI.run(["plot", "--compare", "1", file, "--db", db, "--svg", svg])
        #expect(bars.status == 0, "\(bars.stderr)")
        #expect(try String(contentsOfFile: svg, encoding: .utf8).contains("run 1:"))
        let none = try CLI.run(["plot", "--compare", "2", "--db", db, "--svg", svg])
        #expect(none.status == 65 && none.stderr.contains("no per-rank rows"), "\(none.stderr)")
    }

    @Test("plot at scale: a band and the slowest ranks by default, --layers and --window checked")
    func plots() throws {
        let file = try CLI.temporaryFile(Self.scenario)
        let dir = URL(fileURLWithPath: file).deletingLastPathComponent()
        let svg = dir.appendingPathComponent("t.svg").path
        let out = try CLI.run(["plot", file, "--svg", svg, "--layers", "1-2"])
        #expect(out.status == 0, "\(out.stderr)")
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(text.contains("all ranks") && text.contains("layers 1-2") && text.contains("slow rank"))
        for bad in [["--layers", "5-2"], ["--layers", "x"], ["--window", "10"], ["--window", "20-10"], ["--window", "nan-5"]] {
            #expect(try CLI.run(["plot", file, "--svg", svg] + bad).status == 64, "\(bad)")
        }
        #expect(try CLI.run(["plot", "--compare", file, "--svg", svg, "--layers", "1"]).status == 64)
    }
}
