import EPSim
import Foundation
import GRDB

/// The SQLite database of stored runs (`Results/epsim.sqlite` by default).
///
/// Opened in WAL mode with a busy timeout, so several `epsim` processes can write the
/// same database at once; every run is written in one transaction, so an interrupted run
/// leaves nothing behind. The schema is versioned with GRDB's `DatabaseMigrator`: opening
/// an older database migrates it. The schema is documented in `docs/database.md`.
///
/// ```swift
/// let store = try RunStore(path: "Results/epsim.sqlite")
/// let id = try store.save(result, scenario: scenario, source: source, wallSeconds: 0.1, timeline: .full)
/// ```
public final class RunStore: Sendable {
    /// The default database, relative to the working directory.
    public static let defaultPath = "Results/epsim.sqlite"
    /// Version written into every run row.
    public static let toolVersion = "0.3.0"

    public let path: String
    let pool: DatabasePool

    /// Opens (creating it if needed) the database at `path`, migrating it to the current schema.
    ///
    /// - Throws: ``StoreError``: the folder is missing or unwritable (`cannotOpen`), the file
    ///   is not an SQLite database (`notADatabase`), it is an SQLite database that EPSim did
    ///   not create (`foreignDatabase`) or one written by a newer EPSim (`newerSchema`), or
    ///   an older one holds a value its migration cannot convert (`badValue`); in each case
    ///   the file is left as it was.
    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw StoreError(.cannotOpen, path: path, message: "cannot create the database: folder \(folder) does not exist")
        }
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.label = "epsim"
        do {
            // Checked read-only first, so that a foreign or newer database is refused unchanged.
            let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber
            if let size, size.intValue > 0 {
                var readOnly = config
                readOnly.readonly = true
                let queue = try DatabaseQueue(path: path, configuration: readOnly)
                try queue.read { db in try Self.checkEPSimDatabase(db, path: path) }
                try queue.close()
            }
            // Migrated through a queue: a migration that fails rolls back and leaves the file
            // as it was (a pool would switch it to WAL first).
            let queue = try DatabaseQueue(path: path, configuration: config)
            try queue.write { db in try Self.checkEPSimDatabase(db, path: path) }
            try Self.migrator.migrate(queue)
            try queue.close()
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw StoreError.wrap(error, path: path, doing: "open the database")
        }
    }

    /// Refuses an SQLite database that EPSim did not create (tables but no
    /// `grdb_migrations`) and one written by a newer EPSim (an unknown schema version), which
    /// this build could damage.
    static func checkEPSimDatabase(_ db: Database, path: String) throws {
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        if !tables.isEmpty && !tables.contains("grdb_migrations") {
            throw StoreError(
                .foreignDatabase, path: path,
                message:
                    "is an SQLite database that EPSim did not create (tables: \(tables.prefix(5).joined(separator: ", "))); it was left untouched: pass another --db path"
            )
        }
        let unknown = try migrator.appliedIdentifiers(db).subtracting(Schema.versions)
        if !unknown.isEmpty {
            throw StoreError(
                .newerSchema, path: path,
                message:
                    "has schema version \(unknown.sorted().joined(separator: ", ")), newer than this epsim knows (up to \(Schema.versions.last!)); it was left untouched: use a newer epsim"
            )
        }
    }

    /// Version 1: runs, per-rank results and the kernel timeline.
    /// Version 2: the kernel's send time, and the index for "kernels of a run on a rank".
    /// Version 3: why a waiting RECV's last message came late (`blame`) and how much of
    /// its wait the blocker caused (`blocker_lag_us`).
    /// Version 4: every simulated time an INTEGER of picoseconds (`*_ps`), exact, with
    /// `*_us` views; `rank_steps` also keeps barrier, launch gaps and compute (``Schema``).
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE runs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        created_at TEXT NOT NULL,
                        scenario_name TEXT NOT NULL,
                        scenario_path TEXT NOT NULL,
                        scenario_text TEXT NOT NULL,
                        scenario_hash TEXT NOT NULL,
                        seed INTEGER NOT NULL,
                        schedule TEXT NOT NULL,
                        tool_version TEXT NOT NULL,
                        ranks INTEGER NOT NULL,
                        steps INTEGER NOT NULL,
                        step_latency_us REAL NOT NULL,
                        rank_latency_mean_us REAL NOT NULL,
                        rank_latency_min_us REAL NOT NULL,
                        rank_latency_max_us REAL NOT NULL,
                        slowest_rank INTEGER NOT NULL,
                        kernel_count INTEGER NOT NULL,
                        flow_count INTEGER NOT NULL,
                        message_count INTEGER NOT NULL,
                        wall_time_s REAL NOT NULL,
                        timeline TEXT NOT NULL,
                        summary_json TEXT NOT NULL
                    );
                    CREATE INDEX runs_by_scenario ON runs(scenario_name, id);
                    CREATE TABLE rank_steps (
                        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                        step INTEGER NOT NULL,
                        rank INTEGER NOT NULL,
                        tokens INTEGER NOT NULL,
                        start_us REAL NOT NULL,
                        end_us REAL NOT NULL,
                        e2e_us REAL NOT NULL,
                        busy_us REAL NOT NULL,
                        attention_us REAL NOT NULL,
                        shared_us REAL NOT NULL,
                        dense_us REAL NOT NULL,
                        dispatch_us REAL NOT NULL,
                        dispatch_wait_us REAL NOT NULL,
                        gemm_us REAL NOT NULL,
                        combine_us REAL NOT NULL,
                        combine_wait_us REAL NOT NULL,
                        exposed_comm_us REAL NOT NULL,
                        PRIMARY KEY (run_id, step, rank)
                    ) WITHOUT ROWID;
                    CREATE TABLE kernels (
                        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                        step INTEGER NOT NULL,
                        rank INTEGER NOT NULL,
                        layer INTEGER NOT NULL,
                        micro_batch TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        stream TEXT NOT NULL,
                        start_us REAL NOT NULL,
                        end_us REAL NOT NULL,
                        wait_us REAL NOT NULL,
                        bytes_out INTEGER NOT NULL,
                        bytes_in INTEGER NOT NULL,
                        tokens INTEGER NOT NULL,
                        blocker_rank INTEGER,
                        last_arrival_us REAL
                    );
                    """)
        }
        m.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    ALTER TABLE kernels ADD COLUMN send_end_us REAL;
                    CREATE INDEX kernels_by_run_rank ON kernels(run_id, rank, start_us);
                    """)
        }
        m.registerMigration("v3") { db in
            try db.execute(sql: "ALTER TABLE kernels ADD COLUMN blame TEXT; ALTER TABLE kernels ADD COLUMN blocker_lag_us REAL")
        }
        m.registerMigration("v4") { db in try Schema.migrateToVersion4(db) }
        return m
    }

    /// The schema versions applied to this database, oldest first.
    public func schemaVersions() throws -> [String] {
        try read { db in try Self.migrator.appliedMigrations(db) }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch { throw StoreError.wrap(error, path: path, doing: "read the database") }
    }

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch { throw StoreError.wrap(error, path: path, doing: "write the database") }
    }
}
