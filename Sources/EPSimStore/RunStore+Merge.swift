import EPSim
import Foundation
import GRDB

/// What `db merge` did with one source database.
public struct MergeOutcome: Sendable, Equatable {
    public var source: String
    /// The ids the source's runs got in the target, in the source's order (those copied).
    public var newIDs: [Int64]
    /// The source's runs that were already in the target (or in an earlier source of the
    /// same merge), and so not copied again.
    public var skipped: Int
    /// The same for serving runs (`serve_runs`, with their steps, rank-steps and requests).
    public var newServingIDs: [Int64] = []
    public var skippedServing = 0

    public init(source: String, newIDs: [Int64], skipped: Int, newServingIDs: [Int64] = [], skippedServing: Int = 0) {
        self.source = source
        self.newIDs = newIDs
        self.skipped = skipped
        self.newServingIDs = newServingIDs
        self.skippedServing = skippedServing
    }
}

extension RunStore {
    /// Copies every run of the databases at `sources` (with per-rank rows and kernels), and
    /// every serving run (with its steps, rank-steps and requests), into the database at
    /// `target`, created when missing, under new ids, in one transaction.
    ///
    /// Used to combine the databases of a sweep run in shards on several machines. Every
    /// source is opened read-only and identified before the target is opened, so a missing,
    /// foreign, newer or damaged source (or the target itself given as a source) is refused
    /// before anything is written; a source at schema version 1 to 3 is read as version 4, each
    /// time converted as the migration converts it. All sources are copied in one transaction:
    /// a failure part-way (a damaged page, a value that is not a time) leaves the target as it
    /// was, and a target this merge created is removed again.
    ///
    /// Merging is idempotent: a run whose identity (``RunIdentity``) is already in the target
    /// is skipped, so merging one shard twice, or a database into a copy of itself, adds nothing;
    /// a serving run is skipped when a `serve_runs` row equal in every column but the id is.
    ///
    /// - Throws: ``StoreError``: `sameFile`, `noDatabase` (a missing or empty source),
    ///   `cannotOpen`, `notADatabase`, `foreignDatabase`, `newerSchema`, `badValue`.
    public static func merge(into target: String, from sources: [String]) throws -> [MergeOutcome] {
        for source in sources where sameFile(source, target) {
            throw StoreError(.sameFile, path: source, message: "is the target database itself; leave it out of the sources")
        }
        var stores: [RunStore] = []
        defer { for store in stores { try? store.close() } }
        for source in sources { stores.append(try RunStore(path: source, mode: .read)) }
        let existed = FileManager.default.fileExists(atPath: target)
        do {
            let store = try RunStore(path: target, mode: .create)
            defer { try? store.close() }
            return try store.copyRuns(from: stores)
        } catch {
            if !existed { removeIfEmpty(target) }
            throw error
        }
    }

    /// Copies the runs of the databases at `sources` into this one, in one transaction, as
    /// ``merge(into:from:)`` does (which also creates the target, and removes it on failure).
    public func merge(from sources: [String]) throws -> [MergeOutcome] {
        for source in sources where Self.sameFile(source, path) {
            throw StoreError(.sameFile, path: source, message: "is the target database itself; leave it out of the sources")
        }
        var stores: [RunStore] = []
        defer { for store in stores { try? store.close() } }
        for source in sources { stores.append(try RunStore(path: source, mode: .read)) }
        return try copyRuns(from: stores)
    }

    /// Merges one source; returns the new ids of the runs it copied.
    @discardableResult
    public func merge(from source: String) throws -> [Int64] {
        try merge(from: [source])[0].newIDs
    }

    func copyRuns(from sources: [RunStore]) throws -> [MergeOutcome] {
        let runColumns = "id, \(Schema.names(Schema.runColumns))"
        return try write { db in
            // A failure on the target's side names the target; one in a source's read, the source.
            func target<T>(_ body: () throws -> T) throws -> T {
                do { return try body() } catch { throw StoreError.wrap(error, path: path, doing: "write the database") }
            }
            var known = Set(try Row.fetchAll(db, sql: "SELECT \(runColumns) FROM runs").map(RunIdentity.init))
            let insertRun = try db.makeStatement(
                sql: "INSERT INTO runs (\(Schema.names(Schema.runColumns))) VALUES (\(Schema.placeholders(Schema.runColumns.count)))")
            let insertRankStep = try db.makeStatement(
                sql: "INSERT INTO rank_steps (run_id, \(Schema.names(Schema.rankStepColumns))) VALUES (?, \(Schema.placeholders(Schema.rankStepColumns.count)))"
            )
            let insertKernel = try db.makeStatement(
                sql: "INSERT INTO kernels (run_id, \(Schema.names(Schema.kernelColumns))) VALUES (?, \(Schema.placeholders(Schema.kernelColumns.count)))")
            var outcomes: [MergeOutcome] = []
            for source in sources {
                var outcome = MergeOutcome(source: source.path, newIDs: [], skipped: 0)
                try source.read { src in
                    let runs = try Row.fetchCursor(src, sql: "SELECT \(runColumns) FROM runs ORDER BY id")
                    while let run = try runs.next() {
                        guard known.insert(RunIdentity(run)).inserted else {
                            outcome.skipped += 1
                            continue
                        }
                        let id: Int64 = try run.decode(atIndex: 0)
                        try target { try insertRun.execute(arguments: StatementArguments(run.databaseValues.dropFirst())) }
                        let newID = db.lastInsertedRowID
                        let rows = try Row.fetchCursor(
                            src, sql: "SELECT \(Schema.names(Schema.rankStepColumns)) FROM rank_steps WHERE run_id = ?", arguments: [id])
                        while let row = try rows.next() {
                            insertRankStep.setUncheckedArguments(StatementArguments([newID.databaseValue] + row.databaseValues))
                            try target { try insertRankStep.execute() }
                        }
                        let kernels = try Row.fetchCursor(
                            src, sql: "SELECT \(Schema.names(Schema.kernelColumns)) FROM kernels WHERE run_id = ? ORDER BY rowid", arguments: [id])
                        while let k = try kernels.next() {
                            insertKernel.setUncheckedArguments(StatementArguments([newID.databaseValue] + k.databaseValues))
                            try target { try insertKernel.execute() }
                        }
                        outcome.newIDs.append(newID)
                    }
                }
                try copyServingRuns(from: source, into: db, outcome: &outcome, onTarget: target)
                outcomes.append(outcome)
            }
            return outcomes
        }
    }

    /// The serving tables' rows of one serving run, child tables keyed by `serve_id` first.
    static let servingChildTables = ["serve_steps", "serve_rank_steps", "serve_requests"]

    /// Copies `source`'s serving runs into `db` (inside ``copyRuns(from:)``'s transaction):
    /// a source older than version 5 has none.
    func copyServingRuns(from source: RunStore, into db: Database, outcome: inout MergeOutcome, onTarget: (() throws -> Void) throws -> Void) throws {
        let columns = try db.columns(in: "serve_runs").map(\.name).filter { $0 != "id" }
        let list = columns.joined(separator: ", ")
        var known = Set(try Row.fetchAll(db, sql: "SELECT \(list) FROM serve_runs").map { Array($0.databaseValues) })
        let insertRun = try db.makeStatement(sql: "INSERT INTO serve_runs (\(list)) VALUES (\(Schema.placeholders(columns.count)))")
        try source.read { src in
            guard try src.tableExists("serve_runs") else { return }
            // Named columns, serve_id first, so the copy does not depend on column order.
            var inserts: [String: Statement] = [:]
            var selects: [String: String] = [:]
            for table in Self.servingChildTables {
                let names = ["serve_id"] + (try db.columns(in: table).map(\.name).filter { $0 != "serve_id" })
                let joined = names.joined(separator: ", ")
                inserts[table] = try db.makeStatement(sql: "INSERT INTO \(table) (\(joined)) VALUES (\(Schema.placeholders(names.count)))")
                selects[table] = "SELECT \(joined) FROM \(table) WHERE serve_id = ?"
            }
            let runs = try Row.fetchCursor(src, sql: "SELECT id, \(list) FROM serve_runs ORDER BY id")
            while let run = try runs.next() {
                let values = Array(run.databaseValues.dropFirst())
                guard known.insert(values).inserted else {
                    outcome.skippedServing += 1
                    continue
                }
                let id: Int64 = try run.decode(atIndex: 0)
                try onTarget { try insertRun.execute(arguments: StatementArguments(values)) }
                let newID = db.lastInsertedRowID
                for table in Self.servingChildTables {
                    let rows = try Row.fetchCursor(src, sql: selects[table]!, arguments: [id])
                    while let row = try rows.next() {
                        inserts[table]!.setUncheckedArguments(StatementArguments([newID.databaseValue] + row.databaseValues.dropFirst()))
                        try onTarget { try inserts[table]!.execute() }
                    }
                }
                outcome.newServingIDs.append(newID)
            }
        }
    }

    /// Removes the database at `path` (with its `-wal`, `-shm` and `-journal`) when it holds
    /// no run: what a failed merge leaves of a target it created.
    static func removeIfEmpty(_ path: String) {
        if let store = try? RunStore(path: path, mode: .read) {
            let runs = try? store.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM runs") }
            try? store.close()
            guard runs == 0 else { return }
        } else if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber, size.intValue > 0 {
            return  // not readable as a run database, yet not empty: not ours to remove
        }
        for suffix in ["", "-wal", "-shm", "-journal"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    /// Whether two paths name one file (the same file reached by two spellings or through a
    /// symbolic link included): the same device and inode, as `stat` (which follows links) sees them.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        func identity(_ path: String) -> [UInt64]? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return [UInt64(info.st_dev), UInt64(info.st_ino)]
        }
        guard let x = identity(a), let y = identity(b) else {
            return URL(fileURLWithPath: a).standardizedFileURL.path == URL(fileURLWithPath: b).standardizedFileURL.path
        }
        return x == y
    }
}

/// What makes two stored runs the same run, for `db merge`: when it was stored
/// (`created_at`, to the second), what ran (`scenario_hash`, `scenario_path`, `seed`,
/// `schedule`), what was kept (`timeline`), what came out (`step_latency_ps`) and how long
/// the simulation took (`wall_time_s`, the measured wall time to the nanosecond, which
/// separates two runs of one scenario started in the same second).
struct RunIdentity: Hashable {
    static let columns = ["created_at", "scenario_hash", "scenario_path", "seed", "schedule", "timeline", "step_latency_ps", "wall_time_s"]
    var values: [DatabaseValue]

    init(_ row: Row) {
        values = Self.columns.map { row[$0] as DatabaseValue }
    }
}
