import EPSim
import Foundation
import GRDB
import Testing

@testable import EPSimStore

@Suite("db merge: all or nothing, idempotent")
struct MergeTests {
    /// A version-4 database with `count` runs stored a second apart.
    static func database(runs count: Int, startingAt second: Int = 0) throws -> String {
        let path = try temporaryDatabasePath()
        let store = try RunStore(path: path)
        for i in 0..<count {
            _ = try OpenModeTests.saveOne(store, wallSeconds: 0.5, createdAt: Date(timeIntervalSince1970: Double(1_800_000_000 + second + i)))
        }
        try store.close()
        return path
    }

    static func runCount(_ path: String) throws -> Int {
        let store = try RunStore(path: path, mode: .read)
        defer { try? store.close() }
        return try store.list().count
    }

    @Test("merging a source twice, a copy of it, or a database that holds its runs adds nothing the second time")
    func idempotent() throws {
        let source = try Self.database(runs: 2)
        let target = try temporaryDatabasePath()
        let first = try RunStore.merge(into: target, from: [source])
        #expect(first == [MergeOutcome(source: source, newIDs: [1, 2], skipped: 0)])
        #expect(try RunStore.merge(into: target, from: [source]) == [MergeOutcome(source: source, newIDs: [], skipped: 2)])
        let copy = try temporaryDatabasePath()
        try FileManager.default.copyItem(atPath: source, toPath: copy)
        #expect(try RunStore.merge(into: target, from: [copy, source]).map(\.skipped) == [2, 2])
        // Chains: the target merged into a third database, then the source again.
        let third = try temporaryDatabasePath()
        #expect(try RunStore.merge(into: third, from: [target]).map(\.newIDs) == [[1, 2]])
        #expect(try RunStore.merge(into: third, from: [source]).map(\.skipped) == [2])
        #expect(try Self.runCount(target) == 2 && Self.runCount(third) == 2)
        // A run of the same scenario stored in the same second but not the same run is copied.
        let other = try temporaryDatabasePath()
        let store = try RunStore(path: other)
        _ = try OpenModeTests.saveOne(store, wallSeconds: 0.75, createdAt: Date(timeIntervalSince1970: 1_800_000_000))
        try store.close()
        #expect(try RunStore.merge(into: target, from: [other]).map(\.newIDs) == [[3]])
    }

    @Test("a source that fails part-way leaves an existing target as it was and removes a target the merge created")
    func allOrNothing() throws {
        let good = try Self.database(runs: 2)
        let (s, result) = try storeScenario()
        let bad = try temporaryDatabasePath()
        try Version3File.create(at: bad, runs: [(result, s), (result, s)])
        try DatabaseQueue(path: bad).write { try $0.execute(sql: "UPDATE kernels SET end_us = 'soon' WHERE run_id = 2") }

        let target = try Self.database(runs: 1, startingAt: 100)
        #expect {
            try RunStore.merge(into: target, from: [good, bad])
        } throws: { e in
            let e = e as? StoreError
            return e?.code == .badValue && e?.path == bad
        }
        #expect(try Self.runCount(target) == 1, "the good source's runs were rolled back with the bad one's")

        let created = try temporaryDatabasePath()
        #expect(throws: StoreError.self) { try RunStore.merge(into: created, from: [good, bad]) }
        for suffix in ["", "-wal", "-shm", "-journal"] { #expect(!FileManager.default.fileExists(atPath: created + suffix)) }
    }

    @Test("missing, empty and unreadable sources, and the target itself, are refused before the target is created")
    func refusedSources() throws {
        let good = try Self.database(runs: 1)
        let dir = URL(fileURLWithPath: good).deletingLastPathComponent()
        let garbage = dir.appendingPathComponent("garbage.sqlite").path
        try Data("SQLite format 3\0 and then nothing a database has".utf8).write(to: URL(fileURLWithPath: garbage))
        let empty = dir.appendingPathComponent("empty.sqlite").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        let cases: [(String, StoreError.Code)] = [
            (dir.appendingPathComponent("shard-*.sqlite").path, .noDatabase), (empty, .noDatabase), (garbage, .notADatabase),
        ]
        for (source, code) in cases {
            let target = dir.appendingPathComponent("target-\(UUID().uuidString).sqlite").path
            #expect {
                try RunStore.merge(into: target, from: [good, source])
            } throws: { e in
                (e as? StoreError)?.code == code && (e as? StoreError)?.path == source
            }
            #expect(!FileManager.default.fileExists(atPath: target), "\(source)")
        }
        // The target as a source, spelled differently or through a link: refused at once.
        let link = dir.appendingPathComponent("link.sqlite").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: good)
        let before = try FileState(good)
        for spelling in [good, dir.path + "/./" + URL(fileURLWithPath: good).lastPathComponent, link] {
            #expect { try RunStore.merge(into: good, from: [spelling]) } throws: { ($0 as? StoreError)?.code == .sameFile }
        }
        #expect(try FileState(good) == before)
    }
}
