import Foundation
import GRDB

/// Opening a run database: what the file is, found without writing to it; reading it
/// read-only; creating or migrating it in one transaction that concurrent openers take in
/// turn.
extension RunStore {
    /// What a file holds, as ``identify(_:path:)`` finds it.
    enum Content: Equatable {
        /// No schema at all (a zero-length file, or an SQLite file without tables and without
        /// another application's `application_id` or `user_version`): EPSim may create its
        /// tables in it.
        case empty
        /// An EPSim database at schema `version` (1 ... ``Schema/versions``.count); `tagged`
        /// when its `application_id` is EPSim's (databases created before it was set are not).
        case epsim(version: Int, tagged: Bool)
    }

    /// Says what the database holds, reading only; throws for anything EPSim must not touch.
    ///
    /// An EPSim database carries EPSim's `application_id` (or, made before that was set, none)
    /// and records its schema versions in `grdb_migrations`, which must be EPSim's `v1`, `v2`,
    /// ... without a gap; its `runs`, `rank_steps` and `kernels` tables must have every column
    /// of that version. Unknown versions after EPSim's mean a newer EPSim wrote it.
    static func identify(_ db: Database, path: String) throws -> Content {
        let applicationID = try Int32.fetchOne(db, sql: "PRAGMA main.application_id") ?? 0
        let userVersion = try Int.fetchOne(db, sql: "PRAGMA main.user_version") ?? 0
        let objects = try String.fetchAll(
            db, sql: "SELECT type || ' ' || name FROM main.sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type DESC, name")
        let tables = try String.fetchAll(db, sql: "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        func foreign(_ what: String) -> StoreError {
            StoreError(
                .foreignDatabase, path: path,
                message: "is an SQLite database that EPSim did not create (\(what)); it was left untouched: pass another --db path")
        }
        if applicationID != 0 && applicationID != Self.applicationID {
            throw foreign("application_id \(String(format: "0x%08X", UInt32(bitPattern: applicationID))) is another application's")
        }
        if objects.isEmpty {
            if applicationID == 0 && userVersion != 0 { throw foreign("no tables, user_version \(userVersion)") }
            return .empty
        }
        guard tables.contains("grdb_migrations") else {
            throw foreign(tables.isEmpty ? objects.prefix(5).joined(separator: ", ") : "tables: \(tables.prefix(5).joined(separator: ", "))")
        }
        let applied = try String.fetchAll(db, sql: "SELECT identifier FROM main.grdb_migrations ORDER BY identifier")
        let version = Schema.versions.prefix { applied.contains($0) }.count
        let unknown = applied.filter { !Schema.versions.contains($0) }
        guard version > 0 else { throw foreign("its schema versions are \(applied.prefix(5).joined(separator: ", "))") }
        if !unknown.isEmpty {
            throw StoreError(
                .newerSchema, path: path,
                message:
                    "has schema version \(unknown.joined(separator: ", ")), newer than this epsim knows (up to \(Schema.versions.last!)); it was left untouched: use a newer epsim"
            )
        }
        if applied.count != version {
            throw foreign("its schema versions \(applied.joined(separator: ", ")) have a gap")
        }
        for (table, key, columns) in [
            ("runs", "id", Schema.runColumns), ("rank_steps", "run_id", Schema.rankStepColumns), ("kernels", "run_id", Schema.kernelColumns),
        ] {
            let present = Set(try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info(?, 'main')", arguments: [table]))
            let missing = ([key] + columns.compactMap { $0.storedName(atVersion: version) }).filter { !present.contains($0) }
            if present.isEmpty { throw foreign("schema version \(Schema.versions[version - 1]) but no table \(table)") }
            if !missing.isEmpty {
                throw foreign("schema version \(Schema.versions[version - 1]) but table \(table) lacks \(missing.prefix(3).joined(separator: ", "))")
            }
        }
        return .epsim(version: version, tagged: applicationID == Self.applicationID)
    }

    // MARK: - Reading

    static var readerConfiguration: Configuration {
        var config = Configuration()
        config.readonly = true
        config.busyMode = .timeout(30)
        config.label = "epsim-read"
        config.prepareDatabase { db in
            // The conversion views of an older database are the only thing a reader creates.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            db.add(function: Schema.microsToPicos)
        }
        return config
    }

    /// A read-only connection (`SQLITE_OPEN_READONLY`): it never writes the database file.
    ///
    /// A WAL database needs its `-shm` and `-wal` files, which SQLite creates beside it and
    /// cannot in a folder this process may not write (a read-only mount, another user's
    /// folder). When that is why the open fails and there is no `-wal` with content, the
    /// file is opened `immutable` (SQLite then takes no locks: right for a file nobody is
    /// writing, which a database without a `-wal` is not, at that moment).
    static func openReadOnly(path: String) throws -> DatabaseQueue {
        try checkHeader(path: path)
        func open(_ name: String) throws -> DatabaseQueue {
            let queue = try DatabaseQueue(path: name, configuration: readerConfiguration)
            do {
                try queue.read { db in _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM main.sqlite_master") }
                return queue
            } catch {
                try? queue.close()
                throw error
            }
        }
        do {
            return try open(path)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_READONLY || error.resultCode == .SQLITE_CANTOPEN {
            let walSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? NSNumber
            guard (walSize?.intValue ?? 0) == 0, FileManager.default.isReadableFile(atPath: path) else { throw error }
            let encoded = URL(fileURLWithPath: path).standardizedFileURL.path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path
            return try open("file:\(encoded)?immutable=1")
        }
    }

    /// The database at `path` opened read-only, checked to be an EPSim database; one at an
    /// older schema version gets temporary views (in this connection only) that show its
    /// tables as the current version, converted as the migration would.
    static func openForReading(path: String) throws -> DatabaseQueue {
        try checkExists(path: path)
        let queue = try openReadOnly(path: path)
        do {
            switch try queue.read({ try identify($0, path: path) }) {
            case .empty:
                throw StoreError(.noDatabase, path: path, message: "is empty: no run has been stored in it")
            case .epsim(let version, _) where version < Schema.versions.count:
                try queue.writeWithoutTransaction { db in try db.execute(sql: Schema.conversionViews(fromVersion: version)) }
            case .epsim:
                break
            }
            return queue
        } catch {
            try? queue.close()
            throw error
        }
    }

    /// Throws `notADatabase` when the file at `path` has content that does not begin with
    /// SQLite's 16-byte header ("SQLite format 3\0"): SQLite would take a file shorter than a
    /// page for an empty database and write over it. An empty file passes (a new database).
    static func checkHeader(path: String) throws {
        // A device or FIFO (`--db /dev/null`) is not a database file: SQLite would put its
        // journal files beside it and a failed merge would remove it.
        var info = stat()
        if stat(path, &info) == 0 && info.st_mode & S_IFMT != S_IFREG {
            throw StoreError(.cannotOpen, path: path, message: "is not a regular file; a run database is a file")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { return }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 16)) ?? Data()
        guard head.isEmpty || head == Data("SQLite format 3\u{0}".utf8) else {
            throw StoreError(.notADatabase, path: path, message: "is not an SQLite database, or is damaged (its first bytes are not SQLite's header); left as it was")
        }
    }

    /// Throws `noDatabase` when nothing is at `path`, `cannotOpen` when a folder is.
    static func checkExists(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
            throw StoreError(.noDatabase, path: path, message: "no such run database (no file at \(absolute))")
        }
        if isDirectory.boolValue { throw StoreError(.cannotOpen, path: path, message: "is a folder, not a database file") }
    }

    // MARK: - Writing

    /// The database at `path` opened for writing, created (when `create`) or migrated first.
    ///
    /// 1. A file with content is identified read-only, so a file EPSim must not touch is left
    ///    as it was.
    /// 2. Unless it is already current, one connection without foreign-key enforcement (the
    ///    version-4 migration rebuilds tables, as GRDB's migrator does) runs ``migrate(_:path:)``
    ///    in one `BEGIN IMMEDIATE` transaction: concurrent openers take it in turn and the later
    ///    ones find the work done. A legacy database in rollback-journal mode is migrated in that
    ///    mode, so a failed migration leaves its bytes as they were.
    /// 3. The pool switches the file to WAL (once, under SQLite's exclusive lock).
    /// 4. `BEGIN IMMEDIATE; ROLLBACK` proves the write lock can be taken: a read-only file is
    ///    refused now rather than after a long simulation.
    static func openForWriting(path: String, create: Bool) throws -> DatabasePool {
        if FileManager.default.fileExists(atPath: path) { try checkHeader(path: path) }
        if !create || FileManager.default.fileExists(atPath: path) { try checkExists(path: path) }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw StoreError(.cannotOpen, path: path, message: "cannot create the database: folder \(folder) does not exist")
        }
        var current = false
        let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber
        if let size, size.intValue > 0 {
            let queue = try openReadOnly(path: path)
            defer { try? queue.close() }
            let content = try queue.read { try identify($0, path: path) }
            current = content == .epsim(version: Schema.versions.count, tagged: true)
        }
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.label = "epsim"
        if !current {
            var migration = config
            migration.foreignKeysEnabled = false
            let queue = try DatabaseQueue(path: path, configuration: migration)
            defer { try? queue.close() }
            try queue.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    try migrate(db, path: path)
                    return .commit
                }
            }
        }
        let pool = try DatabasePool(path: path, configuration: config)
        do {
            try pool.writeWithoutTransaction { db in try db.inTransaction(.immediate) { .rollback } }
        } catch {
            try? pool.close()
            throw error
        }
        return pool
    }

    /// Brings the database to the current schema inside the caller's write transaction: the
    /// schema is identified again under the lock, the missing versions applied in order and
    /// recorded in `grdb_migrations`, EPSim's `application_id` set, foreign keys checked.
    static func migrate(_ db: Database, path: String) throws {
        let version: Int
        switch try identify(db, path: path) {
        case .empty: version = 0
        case .epsim(let v, let tagged) where v == Schema.versions.count && tagged: return
        case .epsim(let v, _): version = v
        }
        try db.execute(sql: "CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
        for (identifier, migrate) in migrations.dropFirst(version) {
            try migrate(db)
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES (?)", arguments: [identifier])
        }
        try db.execute(sql: "PRAGMA application_id = \(applicationID)")
        try db.checkForeignKeys()
    }

    /// Runs `open` again while SQLite answers `SQLITE_BUSY` at once, up to 30 s in all.
    ///
    /// SQLite does not call the busy handler where waiting could deadlock (a connection that
    /// holds a read lock and wants the write lock) and while another connection recovers a WAL
    /// index; opening is safe to repeat from the start, so it is.
    static func withBusyRetry<T>(path: String, _ open: () throws -> T) throws -> T {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        var pauseSeconds = 0.005
        while true {
            do {
                return try open()
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && clock.now < deadline {
                Thread.sleep(forTimeInterval: pauseSeconds * Double.random(in: 0.5...1.5))
                pauseSeconds = min(pauseSeconds * 2, 0.2)
            } catch {
                throw StoreError.wrap(error, path: path, doing: "open the database")
            }
        }
    }
}
