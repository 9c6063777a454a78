import EPSim
import Foundation
import GRDB

/// The SQLite database of stored runs (`Results/epsim.sqlite` by default).
///
/// Opened for writing in WAL mode with a busy timeout, so several `epsim` processes can
/// write the same database at once; every run is written in one transaction, so an
/// interrupted run leaves nothing behind. Opened for reading, the file is never written. The
/// schema is versioned (GRDB's `grdb_migrations` table); opening an older database for
/// writing migrates it, reading it converts on the fly. The schema is documented in
/// `docs/database.md`.
///
/// ```swift
/// let store = try RunStore(path: "Results/epsim.sqlite")
/// let id = try store.save(result, scenario: scenario, source: source, wallSeconds: 0.1, timeline: .full)
/// let runs = try RunStore(path: "Results/epsim.sqlite", mode: .read).list()
/// ```
public final class RunStore: Sendable {
    /// The default database, relative to the working directory.
    public static let defaultPath = "Results/epsim.sqlite"
    /// Version written into every run row.
    public static let toolVersion = "0.3.0"
    /// `PRAGMA application_id` of an EPSim database ("EPSm"), set when EPSim creates or
    /// migrates one, so that EPSim's files can be told from other applications' without
    /// guessing from table names.
    public static let applicationID: Int32 = 0x4550_536D

    /// How a database is opened.
    public enum Mode: Sendable {
        /// Read only: the file must exist and is never written (no migration, no WAL switch,
        /// SQLite's `SQLITE_OPEN_READONLY`); an older schema is read as the current one.
        case read
        /// Read and write an existing database, migrating it to the current schema.
        case write
        /// Read and write, creating the database when it does not exist.
        case create
    }

    public let path: String
    public let mode: Mode
    /// A `DatabasePool` (WAL) when writable, a read-only `DatabaseQueue` when reading.
    let database: any DatabaseWriter

    /// Opens the database at `path`.
    ///
    /// Before anything is written, the file is identified read-only: a file that is not
    /// SQLite, an SQLite database of another application and one written by a newer EPSim are
    /// refused unchanged. For writing, an older or new database is then migrated in one
    /// `BEGIN IMMEDIATE` transaction that checks the schema again inside it, so that several
    /// processes opening one new database at once create it once; finally the store checks
    /// that it can take the write lock, so a read-only file is refused before any work.
    ///
    /// - Throws: ``StoreError``: `noDatabase` (reading or `.write` a missing or empty
    ///   database), `cannotOpen` (the folder is missing, the file or folder is read-only),
    ///   `notADatabase`, `foreignDatabase`, `newerSchema`, or `badValue` (an older database
    ///   holds a value its migration cannot convert); in each case the file is left as it was.
    public init(path: String, mode: Mode = .create) throws {
        self.path = path
        self.mode = mode
        database = try Self.withBusyRetry(path: path) {
            switch mode {
            case .read: try Self.openForReading(path: path)
            case .write, .create: try Self.openForWriting(path: path, create: mode == .create)
            }
        }
    }

    /// Closes the database's connections; the store cannot be used afterwards.
    public func close() throws {
        do { try database.close() } catch { throw StoreError.wrap(error, path: path, doing: "close the database") }
    }

    /// The schema versions applied to this database, oldest first.
    public func schemaVersions() throws -> [String] {
        try read { db in try Self.migrator.appliedMigrations(db) }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try database.read(body) } catch { throw StoreError.wrap(error, path: path, doing: "read the database") }
    }

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        guard mode != .read else {
            throw StoreError(.cannotOpen, path: path, message: "was opened for reading only; it was not changed")
        }
        do { return try database.write(body) } catch { throw StoreError.wrap(error, path: path, doing: "write the database") }
    }
}
