import EPSim
import EventCore
import Foundation
import GRDB
import Testing

@testable import EPSimStore

/// A database at schema version 3, written as the version-3 code wrote it: the v1-v3
/// migrations, then REAL microseconds (`SimTime.micros`) in every time column.
enum Version3File {
    static func create(at path: String, runs: [(RunResult, Scenario)], timeline: TimelineDetail = .full) throws {
        let queue = try DatabaseQueue(path: path)
        try RunStore.migrator.migrate(queue, upTo: "v3")
        try queue.write { db in
            for (index, (result, scenario)) in runs.enumerated() {
                var summary = RunSummary(result: result)
                let rows = summary.per_rank
                summary.per_rank = []
                // Version 3 had neither of these keys.
                var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(summary)) as! [String: Any]
                var means = json["rank_mean"] as! [String: Any]
                means["barrier_us"] = nil
                means["launch_gaps_us"] = nil
                json["rank_mean"] = means
                let summaryJSON = String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self)
                try db.execute(
                    sql: """
                        INSERT INTO runs (created_at, scenario_name, scenario_path, scenario_text, scenario_hash, seed, schedule,
                            tool_version, ranks, steps, step_latency_us, rank_latency_mean_us, rank_latency_min_us, rank_latency_max_us,
                            slowest_rank, kernel_count, flow_count, message_count, wall_time_s, timeline, summary_json)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        // One second apart: distinct runs to `db merge`, which skips a run already merged.
                        String(format: "2026-01-01T00:00:%02dZ", index), scenario.name, "v3.yaml", "text", "0123456789abcdef",
                        Int64(bitPattern: scenario.workload.seed),
                        scenario.schedule.name, "0.3.0", result.ranks, result.steps, summary.step_latency_us, summary.rank_latency_mean_us,
                        summary.rank_latency_min_us, summary.rank_latency_max_us, summary.slowest_rank, result.kernelCount, result.flowCount,
                        result.messageCount, 0.25, timeline.rawValue, summaryJSON,
                    ])
                let runID = db.lastInsertedRowID
                if timeline != .none {
                    for r in rows {
                        try db.execute(
                            sql: """
                                INSERT INTO rank_steps (run_id, step, rank, tokens, start_us, end_us, e2e_us, busy_us, attention_us, shared_us,
                                    dense_us, dispatch_us, dispatch_wait_us, gemm_us, combine_us, combine_wait_us, exposed_comm_us)
                                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                                """,
                            arguments: StatementArguments(
                                [runID, r.step, r.rank, r.tokens] as [any DatabaseValueConvertible]
                                    + [r[.start], r[.end], r[.e2e], r[.busy], r[.attention], r[.shared], r[.dense], r[.dispatch]]
                                    + [r[.dispatchWait], r[.gemm], r[.combine], r[.combineWait], r[.exposedComm]]))
                    }
                }
                if timeline == .full {
                    for k in result.kernels {
                        try db.execute(
                            sql: """
                                INSERT INTO kernels (run_id, step, rank, layer, micro_batch, kind, stream, start_us, end_us, wait_us,
                                    bytes_out, bytes_in, tokens, blocker_rank, last_arrival_us, send_end_us, blame, blocker_lag_us)
                                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                                """,
                            arguments: [
                                runID, k.step, k.rank, k.layer, k.microBatch.description, k.kind.description, k.stream.description,
                                k.start.micros, k.end.micros, k.wait.micros, k.bytesOut, k.bytesIn, k.tokens,
                                k.blocker >= 0 ? k.blocker : nil, k.lastArrival?.micros, k.sendEnd?.micros,
                                k.blameReason == .none ? nil : k.blameReason.description, k.wait > .zero ? k.blockerLag.micros : nil,
                            ])
                    }
                }
            }
        }
        try queue.close()
    }
}

func fileBytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

@Suite("Schema version 4: exact picoseconds")
struct SchemaVersion4Tests {
    /// The store scenario's result with every time replaced by a large one (up to 2^60 ps,
    /// 13 days), where REAL microseconds lose picoseconds.
    static func largeTimes(seed: UInt64) throws -> (Scenario, RunResult) {
        var (s, result) = try storeScenario()
        var g = SplitMix64(seed: seed)
        func big() -> SimTime { SimTime(picos: Int64(g.next() >> 4)) }
        result.rankSteps = result.rankSteps.map { r in
            var r = r
            for m in RankMetric.allCases where m.unit == .time { m.assign(big().picos, to: &r) }
            r.end = r.start + big()
            return r
        }
        result.rankSteps[0].start = SimTime(picos: 999_999_999_999_937)
        result.kernels = result.kernels.map { k in
            var k = k
            k.start = big()
            k.end = k.start + big()
            k.wait = big()
            k.lastArrival = k.lastArrival.map { _ in big() }
            k.sendEnd = k.sendEnd.map { _ in big() }
            if k.wait > .zero { k.blockerLag = big() }
            return k
        }
        result.kernels[0].start = SimTime(picos: 999_999_999_999_937)
        return (s, result)
    }

    @Test("large times, 999_999_999_999_937 ps among them, come back exactly", arguments: [1, 2, 3] as [UInt64])
    func exactRoundTrip(seed: UInt64) throws {
        let (s, result) = try Self.largeTimes(seed: seed)
        // The times are ones REAL microseconds would not keep, so this test can fail.
        let lossy = result.kernels.filter { SimTime(micros: $0.end.micros) != $0.end }.count
        #expect(lossy > result.kernels.count / 2)
        let store = try RunStore(path: try temporaryDatabasePath())
        let id = try store.save(result, scenario: s, source: RunSource(scenarioPath: "x", scenarioText: ""), wallSeconds: 0, timeline: .full)
        let back = try store.run(id)
        #expect(back.rankSteps == result.rankSteps)
        #expect(try store.kernels(id) == result.kernels)
        #expect(back.listing.stepLatency == result.stepLatency)
        #expect(back.summary == RunSummary(result: result))
    }

    @Test("a version-3 file migrates in place: same runs, ids, rows and times, and the _us views show the version-3 values")
    func migratesVersion3() throws {
        let (s, result) = try storeScenario()
        let path = try temporaryDatabasePath()
        try Version3File.create(at: path, runs: [(result, s), (result, s), (result, s)])
        let v3Kernels = try DatabaseQueue(path: path).read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM kernels WHERE run_id = 2 ORDER BY rowid")
        }
        let v3RankSteps = try DatabaseQueue(path: path).read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM rank_steps WHERE run_id = 2 ORDER BY step, rank")
        }
        try DatabaseQueue(path: path).write {
            try $0.execute(sql: "DELETE FROM kernels WHERE run_id = 3; DELETE FROM rank_steps WHERE run_id = 3; DELETE FROM runs WHERE id = 3")
        }

        let store = try RunStore(path: path)
        #expect(try store.schemaVersions() == ["v1", "v2", "v3", "v4", "v5"])
        #expect(try store.list().map(\.id) == [2, 1])
        let back = try store.run(2)
        #expect(back.rankSteps == result.rankSteps)
        #expect(try store.kernels(2) == result.kernels)
        #expect(back.summary == RunSummary(result: result))
        #expect(back.scenarioHash == "0123456789abcdef" && back.wallSeconds == 0.25)
        // The views give the version-3 tables' values back, column for column.
        let (viewKernels, viewRankSteps) = try store.read { db in
            (
                try Row.fetchAll(db, sql: "SELECT * FROM kernels_us WHERE run_id = 2"),
                try Row.fetchAll(db, sql: "SELECT * FROM rank_steps_us WHERE run_id = 2 ORDER BY step, rank")
            )
        }
        #expect(viewKernels.count == v3Kernels.count)
        for (v, old) in zip(viewKernels, v3Kernels) { for column in old.columnNames { #expect(v[column] as DatabaseValue == old[column] as DatabaseValue) } }
        for (v, old) in zip(viewRankSteps, v3RankSteps) {
            for column in old.columnNames { #expect(v[column] as DatabaseValue == old[column] as DatabaseValue, "\(column)") }
        }
        // A deleted run's id is not handed out again.
        #expect(try store.save(result, scenario: s, source: RunSource(scenarioPath: "x", scenarioText: ""), wallSeconds: 0, timeline: .none) == 4)
    }

    @Test("a version-3 file with a time that is not a number is refused whole and left as it was", arguments: ["'soon'", "1e300"])
    func badVersion3Value(_ value: String) throws {
        let (s, result) = try storeScenario()
        let path = try temporaryDatabasePath()
        try Version3File.create(at: path, runs: [(result, s)])
        try DatabaseQueue(path: path).write { try $0.execute(sql: "UPDATE kernels SET end_us = \(value) WHERE rowid = 5") }
        let before = try fileBytes(path)
        #expect {
            try RunStore(path: path)
        } throws: { e in
            let e = e as? StoreError
            return e?.code == .badValue && e?.path == path && e!.description.contains("microseconds")
        }
        #expect(try fileBytes(path) == before)
    }

    @Test("a database of a newer schema is refused, by every open mode and by merge, with a message, and left as it was")
    func newerSchema() throws {
        let path = try temporaryDatabasePath()
        _ = try RunStore(path: path)
        try DatabaseQueue(path: path).write { try $0.execute(sql: "INSERT INTO grdb_migrations VALUES ('v6')") }
        let before = try fileBytes(path)
        for mode in [RunStore.Mode.create, .write, .read] {
            #expect {
                try RunStore(path: path, mode: mode)
            } throws: { e in
                let e = e as? StoreError
                return e?.code == .newerSchema
                    && e!.description == "\(path): has schema version v6, newer than this epsim knows (up to v5); it was left untouched: use a newer epsim"
            }
        }
        let target = try RunStore(path: try temporaryDatabasePath())
        #expect { try target.merge(from: path) } throws: { ($0 as? StoreError)?.code == .newerSchema }
        #expect(try fileBytes(path) == before)
    }

    @Test("db merge reads a version-3 source read-only, converting as the migration does, next to a version-4 source")
    func mergeAcrossVersions() throws {
        let (s, result) = try storeScenario()
        let v3 = try temporaryDatabasePath()
        try Version3File.create(at: v3, runs: [(result, s), (result, s)], timeline: .full)
        let v3Before = try fileBytes(v3)
        let v4 = try temporaryDatabasePath()
        let (big, bigResult) = try Self.largeTimes(seed: 7)
        try RunStore(path: v4).save(bigResult, scenario: big, source: RunSource(scenarioPath: "x", scenarioText: ""), wallSeconds: 0, timeline: .full)

        let targetPath = try temporaryDatabasePath()
        let target = try RunStore(path: targetPath)
        #expect(try target.merge(from: v3) == [1, 2])
        #expect(try target.merge(from: v4) == [3])
        #expect(try fileBytes(v3) == v3Before, "the source is not changed")
        #expect(try DatabaseQueue(path: v3).read { try RunStore.migrator.appliedMigrations($0) } == ["v1", "v2", "v3"])

        // The same file migrated in place gives the same rows as the merge read on the fly.
        let copy = try temporaryDatabasePath()
        try FileManager.default.copyItem(atPath: v3, toPath: copy)
        let migrated = try RunStore(path: copy)
        for id in [Int64(1), 2] {
            #expect(try target.run(id).rankSteps == migrated.run(id).rankSteps)
            #expect(try target.kernels(id) == migrated.kernels(id))
            #expect(try target.kernels(id) == result.kernels)
        }
        #expect(try target.run(3).rankSteps == bigResult.rankSteps)
        #expect(try target.kernels(3) == bigResult.kernels)

        #expect { try target.merge(from: targetPath) } throws: { ($0 as? StoreError)?.code == .sameFile }
        #expect { try target.merge(from: targetPath + ".missing") } throws: { ($0 as? StoreError)?.code == .noDatabase }
        #expect(try target.list().count == 3)
    }
}
