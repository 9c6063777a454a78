import EPSim
import Foundation
import GRDB
import Testing

@testable import EPSimStore

/// A file's bytes, modification time and the SQLite files beside it: what "left as it was" means.
struct FileState: Equatable {
    var bytes: Data
    var modified: Date?
    var siblings: [String]

    init(_ path: String) throws {
        bytes = try fileBytes(path)
        modified = (try FileManager.default.attributesOfItem(atPath: path))[.modificationDate] as? Date
        siblings = ["-wal", "-shm", "-journal"].filter { FileManager.default.fileExists(atPath: path + $0) }
    }
}

/// SQLite files that EPSim must refuse and leave alone, each built with GRDB as another tool would.
enum ForeignFile: String, CaseIterable, CustomStringConvertible {
    case otherTable, onlyAView, userVersionOnly, otherApplicationID, otherGRDBApplication, epsimVersionNamesOnly, versionGap, missingColumn,
        walMode

    var description: String { rawValue }

    /// In WAL mode: a reader leaves SQLite's empty `-wal` and `-shm` beside it.
    var isWAL: Bool { self == .walMode || self == .versionGap || self == .missingColumn }

    /// What the message says it is.
    var expected: String {
        switch self {
        case .otherTable, .walMode: "tables: notes"
        case .onlyAView: "view v"
        case .userVersionOnly: "no tables, user_version 7"
        case .otherApplicationID: "application_id 0x000004D2 is another application's"
        case .otherGRDBApplication: "its schema versions are createPlayers"
        case .epsimVersionNamesOnly: "schema version v4 but no table runs"
        case .versionGap: "its schema versions v1, v3, v4, v5 have a gap"
        case .missingColumn: "schema version v5 but table runs lacks summary_json"
        }
    }

    func create(at path: String) throws {
        if self == .versionGap || self == .missingColumn { try RunStore(path: path).close() }
        var config = Configuration()
        if self == .walMode { config.journalMode = .wal }
        let queue = try DatabaseQueue(path: path, configuration: config)
        try queue.writeWithoutTransaction { db in
            switch self {
            case .otherTable, .walMode: try db.execute(sql: "CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('keep me')")
            case .onlyAView: try db.execute(sql: "CREATE VIEW v AS SELECT 1")
            case .userVersionOnly: try db.execute(sql: "PRAGMA user_version = 7")
            case .otherApplicationID: try db.execute(sql: "PRAGMA application_id = 1234")
            case .otherGRDBApplication:
                try db.execute(
                    sql: """
                        CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY); INSERT INTO grdb_migrations VALUES ('createPlayers');
                        CREATE TABLE player (id INTEGER PRIMARY KEY, name TEXT)
                        """)
            case .epsimVersionNamesOnly:
                try db.execute(
                    sql: """
                        CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                        INSERT INTO grdb_migrations VALUES ('v1'), ('v2'), ('v3'), ('v4'); CREATE TABLE player (id INTEGER PRIMARY KEY)
                        """)
            case .versionGap: try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'v2'")
            case .missingColumn: try db.execute(sql: "DROP VIEW runs_us; ALTER TABLE runs DROP COLUMN summary_json")
            }
        }
        try queue.close()
    }
}

@Suite("Opening a run database: read, write, create")
struct OpenModeTests {
    static func saveOne(_ store: RunStore, wallSeconds: Double = 0.5, createdAt: Date = Date()) throws -> Int64 {
        let (s, result) = try storeScenario()
        return try store.save(
            result, scenario: s, source: RunSource(scenarioPath: "x", scenarioText: ""), wallSeconds: wallSeconds, timeline: .full,
            createdAt: createdAt)
    }

    @Test("a short file that is not SQLite (SQLite would take it for a new database) is refused by every mode, bytes unchanged", arguments: ["\n", "x", "not a database at all\n"])
    func shortNonSQLite(_ text: String) throws {
        let path = try temporaryDatabasePath()
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        let before = try FileState(path)
        for mode in [RunStore.Mode.read, .write, .create] {
            #expect { _ = try RunStore(path: path, mode: mode) } throws: { ($0 as? StoreError)?.code == .notADatabase }
        }
        #expect(try FileState(path) == before)
    }

    @Test("a foreign SQLite file is refused by every mode and by merge, named in the message, bytes and mtime unchanged", arguments: ForeignFile.allCases)
    func foreign(_ kind: ForeignFile) throws {
        let path = try temporaryDatabasePath()
        try kind.create(at: path)
        let before = try FileState(path)
        func refused(_ body: () throws -> Any) {
            #expect {
                _ = try body()
            } throws: { e in
                let e = e as? StoreError
                return e?.code == .foreignDatabase && e!.description.hasPrefix("\(path): is an SQLite database that EPSim did not create (\(kind.expected))")
                    && e!.description.contains("left untouched")
            }
        }
        for mode in [RunStore.Mode.read, .write, .create] { refused { try RunStore(path: path, mode: mode) } }
        let good = try temporaryDatabasePath()
        let goodStore = try RunStore(path: good)
        _ = try Self.saveOne(goodStore)
        try goodStore.close()
        refused { try RunStore.merge(into: path, from: [good]) }
        let newTarget = try temporaryDatabasePath()
        refused { try RunStore.merge(into: newTarget, from: [path]) }
        #expect(!FileManager.default.fileExists(atPath: newTarget), "a merge refused before it began creates no target")
        var after = try FileState(path)
        // A reader of a WAL file leaves SQLite's empty -wal and -shm; the database itself is untouched.
        if kind.isWAL { after.siblings = before.siblings }
        #expect(after == before)
    }

    @Test("reading: a missing or empty file is an error naming it, and nothing is created")
    func readMissing() throws {
        let dir = URL(fileURLWithPath: try temporaryDatabasePath()).deletingLastPathComponent()
        let missing = dir.appendingPathComponent("Results/epsim.sqlite").path
        for mode in [RunStore.Mode.read, .write] {
            #expect {
                try RunStore(path: missing, mode: mode)
            } throws: { e in
                (e as? StoreError)?.code == .noDatabase && (e as? StoreError)?.description == "\(missing): no such run database (no file at \(missing))"
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("Results").path))
        let empty = dir.appendingPathComponent("empty.sqlite").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        #expect { try RunStore(path: empty, mode: .read) } throws: { ($0 as? StoreError)?.description == "\(empty): is empty: no run has been stored in it" }
        #expect(try FileState(empty).bytes.isEmpty && FileState(empty).siblings.isEmpty)
    }

    @Test("reading a version-3 database converts on the fly and never writes it; writing through a reader is refused")
    func readVersion3() throws {
        let (s, result) = try storeScenario()
        let path = try temporaryDatabasePath()
        try Version3File.create(at: path, runs: [(result, s), (result, s)])
        let before = try FileState(path)
        let store = try RunStore(path: path, mode: .read)
        #expect(try store.list().map(\.id) == [2, 1])
        #expect(try store.run(2).rankSteps == result.rankSteps)
        #expect(try store.kernels(2) == result.kernels)
        #expect(try store.run(1).summary == RunSummary(result: result))
        #expect(try store.schemaVersions() == ["v1", "v2", "v3"])
        #expect { try store.delete(1) } throws: { ($0 as? StoreError)?.code == .cannotOpen }
        try store.close()
        #expect(try FileState(path) == before)
    }

    @Test("reading a version-4 WAL database leaves its bytes and mtime as they were")
    func readVersion4() throws {
        let path = try temporaryDatabasePath()
        let writer = try RunStore(path: path)
        let id = try Self.saveOne(writer)
        try writer.close()
        let before = try FileState(path)
        let store = try RunStore(path: path, mode: .read)
        #expect(try store.list().count == 1)
        #expect(try store.kernels(id).count == (try storeScenario().1.kernels.count))
        try store.close()
        let after = try FileState(path)
        #expect(after.bytes == before.bytes && after.modified == before.modified)
    }

    @Test("EPSim tags what it creates or migrates with its application_id; reading does not tag")
    func applicationID() throws {
        func header(_ path: String) throws -> Int32 {
            let b = try fileBytes(path)
            return Int32(bitPattern: UInt32(b[68]) << 24 | UInt32(b[69]) << 16 | UInt32(b[70]) << 8 | UInt32(b[71]))
        }
        let path = try temporaryDatabasePath()
        let store = try RunStore(path: path)
        _ = try Self.saveOne(store)
        try store.close()
        #expect(try header(path) == RunStore.applicationID)
        // A database of an EPSim that did not tag (version 4, application_id 0).
        try DatabaseQueue(path: path).writeWithoutTransaction { try $0.execute(sql: "PRAGMA application_id = 0") }
        try RunStore(path: path, mode: .read).close()
        #expect(try header(path) == 0)
        let reopened = try RunStore(path: path, mode: .write)
        #expect(try reopened.list().count == 1)
        try reopened.close()
        #expect(try header(path) == RunStore.applicationID)
    }

    @Test("eight connections creating one new database at once: one schema, every run stored", arguments: 1...3)
    func concurrentCreators(trial: Int) async throws {
        let path = try temporaryDatabasePath()
        let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let store = try RunStore(path: path)
                    defer { try? store.close() }
                    return try Self.saveOne(store, wallSeconds: Double.random(in: 0..<1))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(ids.sorted() == Array(1...8))
        let store = try RunStore(path: path, mode: .read)
        #expect(try store.schemaVersions() == Schema.versions)
        #expect(try store.list().count == 8)
    }
}
