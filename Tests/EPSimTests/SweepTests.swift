import Foundation
import Testing

@testable import EPSim

@Suite("Sweeps")
struct SweepTests {
    @Test("the cross product: every combination once, the last key fastest")
    func crossProduct() throws {
        let sweep = try Sweep(varying: ["a=1,2,3", "b.c=x,y", "d=[1,2],[3,4]"])
        let points = sweep.points.map { $0.map(\.description).joined(separator: " ") }
        #expect(points.count == 12)
        #expect(Set(points).count == 12)
        #expect(points[0] == "a=1 b.c=x d=[1,2]")
        #expect(points[1] == "a=1 b.c=x d=[3,4]")
        #expect(points[11] == "a=3 b.c=y d=[3,4]")
        #expect(throws: SweepError.self) { try Sweep(varying: ["novalue"]) }
        #expect(throws: SweepError.self) { try Sweep(varying: ["a=1,,2"]) }
    }

    @Test("a key varied twice, a key path with an empty part, or too many points is refused before any point is built")
    func refused() throws {
        #expect { try Sweep(varying: ["a=1", "b=2", "a=3"]) } throws: { "\($0)".contains("--vary a is given twice") }
        #expect { try Sweep(varying: ["a..b=1"]) } throws: { "\($0)".contains("has an empty part") }
        #expect { try Sweep(varying: [".a=1"]) } throws: { "\($0)".contains("has an empty part") }
        let thousand = (1...1000).map(String.init).joined(separator: ",")
        #expect(try Sweep(varying: ["a=" + thousand, "b=" + thousand]).axes.count == 2, "10^6 points is the limit, not over it")
        #expect { try Sweep(varying: ["a=" + thousand, "b=" + thousand, "c=1,2"]) } throws: { "\($0)".contains("1000 x 1000 x 2 points") }
        // 1000^7 overflows Int: still a message, not a trap.
        #expect(throws: SweepError.self) { try Sweep(varying: (0..<7).map { "k\($0)=" + thousand }) }
    }

    @Test("a value given twice for one key is refused (the same point twice is the same run); short key names stay distinct")
    func duplicateValuesAndShortKeys() throws {
        #expect { try Sweep(varying: ["serving.policy=least-kv,round-robin,least-kv"]) } throws: { "\($0)".contains("the value least-kv is given twice") }
        // Brackets group: [1,2] and [1,3] are different values.
        #expect(try Sweep(varying: ["a=[1,2],[1,3]"]).points.count == 2)
        let keys = try Sweep(varying: ["workload.seed=1,2", "serving.seed=3", "serving.policy=round-robin", "x.a.b=1", "y.a.b=2"]).shortKeys
        #expect(keys == ["workload.seed": "workload.seed", "serving.seed": "serving.seed", "serving.policy": "policy", "x.a.b": "x.a.b", "y.a.b": "y.a.b"])
        #expect(try Sweep(varying: ["p.q.r=1", "s.q.t=2"]).shortKeys == ["p.q.r": "r", "s.q.t": "t"])
    }

    @Test("shards are disjoint and their union is the whole sweep", arguments: [(10, 3), (7, 7), (5, 8), (200, 4), (1, 1)])
    func shards(points: Int, count: Int) throws {
        var seen: [Int] = []
        for i in 0..<count { seen += Sweep.shard(points, index: i, of: count) }
        #expect(seen.sorted() == Array(0..<points))
        #expect(try Sweep.parseShard("2/5") == (2, 5))
        #expect(throws: SweepError.self) { try Sweep.parseShard("5/5") }
    }

    @Test("overrides go through the scenario's own validation, key paths and presets included")
    func overrides() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("Scenarios/batch-imbalance.yaml").path
        let s = try Scenario.load(
            path: path,
            overrides: [
                Override(keyPath: "workload.tokens_per_rank", value: "[7, 9]"), Override(keyPath: "schedule", value: "deepseek-decode"),
                Override(keyPath: "network.rdma.latency_us", value: "9"),
            ])
        #expect(s.workload.tokensPerRank == [7, 9])
        #expect(s.schedule.name == "deepseek-decode")
        #expect(s.network.rdma.latency == .us(9))
        do {
            _ = try Scenario.load(path: path, overrides: [Override(keyPath: "workload.tokens_per_rank", value: "-1")])
            Issue.record("accepted")
        } catch let e as ScenarioError {
            #expect(e.keyPath == "workload.tokens_per_rank")
            #expect(e.file.contains("workload.tokens_per_rank=-1"))
        }
        let preset = root.appendingPathComponent("Scenarios/deepseek-v3-decode-ep128.yaml").path
        let fewer = try Scenario.load(path: preset, overrides: [Override(keyPath: "model.moe_layers", value: "2")])
        #expect(fewer.model.moeLayers == 2 && fewer.model.hidden == 7168)
    }
}

@Suite("The sweep runner")
struct SweepRunnerTests {
    static let path =
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        + "/Scenarios/batch-imbalance.yaml"

    @Test("every point runs once, in parallel, with results keyed by point whatever the timing")
    func runsEveryPoint() throws {
        let sweep = try Sweep(varying: ["workload.tokens_per_rank=[16,8],[32,8],[64,8],[128,8]", "schedule=none,deepseek-decode"])
        let runner = SweepRunner(scenarioPath: Self.path, points: sweep.points)
        let scenarios = try runner.load()
        let outcome = runner.run(scenarios, jobs: 3) { _, s in try Simulation.run(s, options: .init(timeline: .summary)).stepLatency }
        #expect(outcome.results.count == 8 && outcome.failures.isEmpty && !outcome.stopped)
        for (i, latency) in outcome.results {
            // The same point run alone, serially.
            #expect(try Simulation.run(scenarios[i]!, options: .init(timeline: .summary)).stepLatency == latency)
        }
    }

    @Test("a bad value fails the load at its lowest point, named by index and overrides; failing work is reported by point, in order")
    func failures() throws {
        let bad = SweepRunner(scenarioPath: Self.path, points: try Sweep(varying: ["cluster.ranks=2,0,-1"]).points)
        #expect { _ = try bad.load() } throws: { error in
            guard let e = error as? SweepPointError else { return false }
            return e.index == 1 && e.error.keyPath == "cluster.ranks" && e.isInOverride
                && "\(e)".hasPrefix("\(Self.path): point 1 (cluster.ranks=0): cluster.ranks: ") && "\(e)".contains("found 0")
        }
        let (valid, invalid) = try bad.loadValid()
        #expect(valid.keys.sorted() == [0] && invalid.map(\.index) == [1, 2])
        let runner = SweepRunner(scenarioPath: Self.path, points: try Sweep(varying: ["steps=1,2,3,4"]).points)
        struct Odd: Error {}
        let outcome = runner.run(try runner.load(), jobs: 2) { i, _ in
            if i % 2 == 1 { throw Odd() }
            return i
        }
        #expect(outcome.results == [0: 0, 2: 2])
        #expect(outcome.failures.map(\.index) == [1, 3] && outcome.failures[0].message.hasPrefix("steps=2: "))
        // Only the loaded points run: the ones loadValid() set aside are skipped.
        let some = runner.run([0: valid[0]!, 2: valid[0]!], jobs: 2) { i, _ in i }
        #expect(some.results.keys.sorted() == [0, 2] && some.failures.isEmpty)
    }

    @Test("an error in the file's own text keeps the file's line; one in an override's value does not; one in a trace names the trace")
    func pointErrorLocation() throws {
        let runner = SweepRunner(scenarioPath: Self.path, points: try Sweep(varying: ["model.experts=7"]).points)
        #expect { _ = try runner.load() } throws: { error in
            guard let e = error as? SweepPointError else { return false }
            // top_k is the file's (line 8): the message points there.
            return e.error.keyPath == "model.top_k" && !e.isInOverride && "\(e)".hasPrefix("\(Self.path):\(e.error.line!):")
        }
        // A single run (no overrides) names no point.
        let scenarioText = try String(contentsOfFile: Self.path, encoding: .utf8)
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-point-\(UUID().uuidString).yaml").path
        try scenarioText.replacingOccurrences(of: "top_k:", with: "top_k: -3 #").write(toFile: broken, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: broken) }
        #expect { _ = try SweepRunner(scenarioPath: broken, points: [[]]).load() } throws: { error in
            "\(error)".hasPrefix("\(broken):") && !"\(error)".contains("point 0") && "\(error)".contains("model.top_k: ")
        }
        // An error in a file the scenario names (its request trace) is located in that file.
        let e = SweepPointError(
            index: 0, point: [Override(keyPath: "serving.arrivals.file", value: "t.csv")], scenarioPath: "s.yaml",
            error: ScenarioError(.wrongType, file: "dir/t.csv", keyPath: "serving.arrivals.file", line: 3, message: "bad"))
        #expect(e.description == "dir/t.csv:3: point 0 (serving.arrivals.file=t.csv): serving.arrivals.file: bad")
        let unreadable = SweepRunner(scenarioPath: Self.path + ".missing", points: try Sweep(varying: ["steps=1,2"]).points)
        #expect { _ = try unreadable.load() } throws: { ($0 as? ScenarioError)?.code == .unreadableFile }
    }

    @Test("stop() hands out no more points")
    func stop() throws {
        let runner = SweepRunner(scenarioPath: Self.path, points: try Sweep(varying: ["steps=1,2,3,4,5,6"]).points)
        let outcome = runner.run(try runner.load(), jobs: 1) { i, _ in
            if i == 1 { runner.stop() }
            return i
        }
        #expect(outcome.stopped && outcome.results.keys.sorted() == [0, 1])
        // A stop before the run (a signal while the points load): no point is handed out.
        let early = SweepRunner(scenarioPath: Self.path, points: try Sweep(varying: ["steps=1,2"]).points)
        let scenarios = try early.load()
        early.stop()
        let none = early.run(scenarios, jobs: 2) { i, _ in i }
        #expect(none.stopped && none.results.isEmpty)
    }
}

@Suite("Child processes")
struct ChildProcessTests {
    @Test("output captured, peak memory measured, a failing or missing program reported")
    func run() throws {
        let r = try ChildProcess.run("/bin/sh", ["-c", "echo measured; head -c 30000000 /dev/zero | tail -c 1 > /dev/null"])
        #expect(r.output == "measured\n")
        #expect(r.peakMB > 0 && r.wallSeconds > 0)
        #expect(throws: ChildProcess.Failure.self) { try ChildProcess.run("/bin/sh", ["-c", "exit 3"]) }
        #expect(throws: ChildProcess.Failure.self) { try ChildProcess.run("/no/such/program", []) }
    }
}
