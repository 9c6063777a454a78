import EPSim
import EventCore
import Foundation
import GRDB
import Testing

@testable import EPSimStore

func temporaryDatabasePath() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-store-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("runs.sqlite").path
}

let storeScenarioYAML = """
    name: store-test
    cluster: {ranks: 4, gpus_per_node: 2}
    model: {experts: 16, top_k: 4, moe_layers: 2}
    workload: {tokens_per_rank: [64, 16, 32, 0], routing: uniform, seed: 9}
    schedule: deepseek-decode
    steps: 2
    costs: {attn1_us: [60, 70, 80, 200]}
    """

func storeScenario() throws -> (Scenario, RunResult) {
    let s = try Scenario.parse(yaml: storeScenarioYAML, file: "store.yaml")
    return (s, try Simulation.run(s))
}

@Suite("RunStore")
struct RunStoreTests {
    @Test("run, store, read back: identical kernels and figures")
    func roundTrip() throws {
        let (s, result) = try storeScenario()
        let store = try RunStore(path: try temporaryDatabasePath())
        let id = try store.save(
            result, scenario: s, source: RunSource(scenarioPath: "store.yaml", scenarioText: storeScenarioYAML),
            wallSeconds: 0.5, timeline: .full)
        let back = try store.run(id)
        #expect(back.summary == RunSummary(result: result))
        #expect(back.scenarioText == storeScenarioYAML)
        #expect(back.seed == 9 && back.listing.schedule == "deepseek-decode" && back.listing.steps == 2)
        #expect(try store.kernels(id) == result.kernels)
        #expect(try store.kernels(id, rank: 2) == result.kernels.filter { $0.rank == 2 })
        #expect(back.storedKernels == result.kernels.count)
    }

    @Test("timeline none and summary keep what they say")
    func timelineLevels() throws {
        let (s, result) = try storeScenario()
        let store = try RunStore(path: try temporaryDatabasePath())
        let source = RunSource(scenarioPath: "x", scenarioText: "")
        let none = try store.save(result, scenario: s, source: source, wallSeconds: 0, timeline: .none)
        let summary = try store.save(result, scenario: s, source: source, wallSeconds: 0, timeline: .summary)
        #expect(try store.run(none).summary.per_rank.isEmpty)
        #expect(try store.run(none).summary.rank_mean == RunSummary(result: result).rank_mean)
        #expect(try store.run(summary).summary.per_rank.count == 4 * 2)
        #expect(try store.kernels(summary).isEmpty)
    }

    @Test("list is newest first and filters by scenario; delete removes every row")
    func listAndDelete() throws {
        let (s, result) = try storeScenario()
        var other = s
        other.name = "other"
        let store = try RunStore(path: try temporaryDatabasePath())
        let source = RunSource(scenarioPath: "x", scenarioText: "")
        let a = try store.save(result, scenario: s, source: source, wallSeconds: 0, timeline: .full)
        let b = try store.save(result, scenario: other, source: source, wallSeconds: 0, timeline: .full)
        let c = try store.save(result, scenario: s, source: source, wallSeconds: 0, timeline: .full)
        #expect(try store.list().map(\.id) == [c, b, a])
        #expect(try store.list(scenario: "store-test").map(\.id) == [c, a])
        try store.delete(a)
        #expect(try store.list().map(\.id) == [c, b])
        let orphans = try store.read { db in
            try Int.fetchOne(
                db, sql: "SELECT (SELECT count(*) FROM kernels WHERE run_id = ?) + (SELECT count(*) FROM rank_steps WHERE run_id = ?)", arguments: [a, a])
        }
        #expect(orphans == 0)
        #expect(throws: StoreError.self) { try store.delete(a) }
    }

    @Test("a run that fails inside its transaction leaves the database as it was")
    func atomic() throws {
        let (s, result) = try storeScenario()
        let path = try temporaryDatabasePath()
        let store = try RunStore(path: path)
        let source = RunSource(scenarioPath: "x", scenarioText: "")
        try store.save(result, scenario: s, source: source, wallSeconds: 0, timeline: .full)
        func counts() throws -> [Int] {
            try store.read { db in
                try ["runs", "rank_steps", "kernels"].map { try Int.fetchOne(db, sql: "SELECT count(*) FROM \($0)") ?? -1 }
            }
        }
        let before = try counts()
        struct Interrupted: Error {}
        #expect(throws: StoreError.self) {
            _ = try store.save(
                result, scenario: s, source: source, wallSeconds: 0, timeline: .full, createdAt: Date(),
                beforeCommit: { throw Interrupted() })
        }
        #expect(try counts() == before)
    }

    @Test("opening a version-1 database migrates it and keeps its runs")
    func migratesOlderSchema() throws {
        let path = try temporaryDatabasePath()
        let queue = try DatabaseQueue(path: path)
        try RunStore.migrator.migrate(queue, upTo: "v1")
        try queue.write { db in
            try db.execute(
                sql: """
                    INSERT INTO runs (created_at, scenario_name, scenario_path, scenario_text, scenario_hash, seed, schedule, tool_version,
                        ranks, steps, step_latency_us, rank_latency_mean_us, rank_latency_min_us, rank_latency_max_us, slowest_rank,
                        kernel_count, flow_count, message_count, wall_time_s, timeline, summary_json)
                    VALUES ('2026-01-01T00:00:00Z', 'old', 'old.yaml', '', '0', 0, 'none', '0.1.0', 1, 1, 10, 10, 10, 10, 0, 1, 1, 0, 0, 'full', ?)
                    """, arguments: [try String(decoding: JSONEncoder().encode(RunSummary(result: storeScenario().1)), as: UTF8.self)])
            try db.execute(sql: "INSERT INTO kernels VALUES (1, 0, 0, 0, 'A', 'ATTN0', 'compute', 0, 10, 0, 0, 0, 1, NULL, NULL)")
        }
        try queue.close()
        let store = try RunStore(path: path)
        #expect(try store.schemaVersions() == ["v1", "v2", "v3", "v4", "v5"])
        #expect(try store.list().map(\.scenarioName) == ["old"])
        let k = try store.kernels(1)
        #expect(k.count == 1 && k[0].end == SimTime(micros: 10) && k[0].sendEnd == nil)
    }

    @Test("bad database paths give clear errors and damage nothing")
    func badPaths() throws {
        let dir = URL(fileURLWithPath: try temporaryDatabasePath()).deletingLastPathComponent()
        let garbage = dir.appendingPathComponent("garbage.sqlite").path
        try Data("this is not sqlite, just text\n".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect { try RunStore(path: garbage) } throws: { ($0 as? StoreError)?.code == .notADatabase }
        #expect(try String(contentsOfFile: garbage, encoding: .utf8) == "this is not sqlite, just text\n")

        let foreign = dir.appendingPathComponent("foreign.sqlite").path
        let queue = try DatabaseQueue(path: foreign)
        try queue.write { try $0.execute(sql: "CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('keep me')") }
        try queue.close()
        #expect { try RunStore(path: foreign) } throws: { ($0 as? StoreError)?.code == .foreignDatabase }
        let again = try DatabaseQueue(path: foreign)
        #expect(try again.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") } == ["notes"])

        #expect { try RunStore(path: "/nonexistent-folder/x.sqlite") } throws: { ($0 as? StoreError)?.code == .cannotOpen }
        let store = try RunStore(path: dir.appendingPathComponent("ok.sqlite").path)
        #expect { try store.run(42) } throws: { ($0 as? StoreError)?.code == .unknownRun }
    }
}

@Suite("Timeline exports")
struct TimelineExportTests {
    @Test("CSV: documented header, exact and repeatable, the same from memory and from the database")
    func csv() throws {
        let (s, result) = try storeScenario()
        let store = try RunStore(path: try temporaryDatabasePath())
        let id = try store.save(result, scenario: s, source: RunSource(scenarioPath: "x", scenarioText: ""), wallSeconds: 0, timeline: .full)
        let fromMemory = TimelineExport.csv(result.kernels, runID: id)
        let fromDatabase = TimelineExport.csv(try store.kernels(id), runID: id)
        #expect(fromMemory == fromDatabase)
        #expect(TimelineExport.csv(try store.kernels(id), runID: id) == fromDatabase)
        let lines = fromMemory.split(separator: "\n").map(String.init)
        #expect(lines[0] == TimelineExport.csvHeader)
        #expect(lines.count == result.kernels.count + 1)
        let header = lines[0].split(separator: ",").map(String.init)
        for line in lines.dropFirst() {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            #expect(cells.count == header.count)
            let start = Double(cells[header.firstIndex(of: "start_us")!])!
            let end = Double(cells[header.firstIndex(of: "end_us")!])!
            #expect(end >= start)
        }
        #expect(TimelineExport.micros(SimTime(picos: 12_345_678)) == "12.345678")
        #expect(TimelineExport.micros(SimTime(picos: 5)) == "0.000005")
    }

    @Test("Chrome trace: valid JSON, one process per rank, a complete event per kernel and per wait")
    func trace() throws {
        let (_, result) = try storeScenario()
        let text = TimelineExport.chromeTrace(result.kernels, ranks: 4, title: "store \"test\"")
        let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        let events = json["traceEvents"] as! [[String: Any]]
        let processes = events.filter { $0["name"] as? String == "process_name" }
        #expect(Set(processes.compactMap { $0["pid"] as? Int }) == [0, 1, 2, 3])
        let complete = events.filter { $0["ph"] as? String == "X" }
        let waits = result.kernels.filter { $0.wait > .zero }
        #expect(complete.count == result.kernels.count + waits.count)
        #expect(!waits.isEmpty)
        // Every wait slice lies inside its kernel's slice, and every flow has both ends.
        for w in complete where w["name"] as? String == "wait" {
            let ts = w["ts"] as! Double
            let parent = complete.first {
                $0["pid"] as? Int == w["pid"] as? Int && $0["tid"] as? Int == w["tid"] as? Int && $0["name"] as? String != "wait"
                    && ($0["ts"] as! Double) <= ts && ts + (w["dur"] as! Double) <= ($0["ts"] as! Double) + ($0["dur"] as! Double) + 1e-9
            }
            #expect(parent != nil)
        }
        let starts = events.filter { $0["ph"] as? String == "s" }.compactMap { $0["id"] as? Int }
        let ends = events.filter { $0["ph"] as? String == "f" }.compactMap { $0["id"] as? Int }
        #expect(!starts.isEmpty && Set(starts) == Set(ends))
        #expect((json["otherData"] as? [String: Any])?["run"] as? String == "store \"test\"")
    }
}
