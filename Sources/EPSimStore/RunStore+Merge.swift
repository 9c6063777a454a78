import EPSim
import Foundation
import GRDB

extension RunStore {
    /// Copies every run of the database at `source` (with its per-rank rows and kernels)
    /// into this one, under new ids, in one transaction; returns the new ids in source order.
    ///
    /// Used to combine the databases of a sweep run in shards on several machines. The
    /// source is opened read-only and never changed: a source at an older schema version
    /// (1 to 3, times in REAL microseconds) is read as version 4 on the fly, each time
    /// converted to picoseconds as the migration converts it.
    ///
    /// - Throws: ``StoreError``: `cannotOpen` (missing or unreadable source), `notADatabase`,
    ///   `foreignDatabase` (not an EPSim database), `newerSchema` (written by a newer EPSim),
    ///   `sameFile` (the source is this database), `badValue` (a stored time that is not a
    ///   number); nothing is copied from a source that fails.
    @discardableResult
    public func merge(from source: String) throws -> [Int64] {
        guard !Self.sameFile(source, path) else {
            throw StoreError(.sameFile, path: source, message: "is the target database itself; leave it out of the sources")
        }
        var config = Configuration()
        config.readonly = true
        config.label = "epsim-merge-source"
        let sourceQueue: DatabaseQueue
        do {
            guard FileManager.default.fileExists(atPath: source) else {
                throw StoreError(.cannotOpen, path: source, message: "cannot read the database: no such file")
            }
            sourceQueue = try DatabaseQueue(path: source, configuration: config)
        } catch {
            throw StoreError.wrap(error, path: source, doing: "open the database")
        }
        let version = try Self.sourceVersion(sourceQueue, path: source)
        func select(_ columns: [Schema.Column]) -> String { columns.map { $0.select(from: version) }.joined(separator: ", ") }
        do {
            return try pool.write { db in
                try sourceQueue.read { src in
                    src.add(function: Schema.microsToPicos)
                    let insertRun = try db.makeStatement(
                        sql: "INSERT INTO runs (\(Schema.names(Schema.runColumns))) VALUES (\(Schema.placeholders(Schema.runColumns.count)))")
                    let insertRankStep = try db.makeStatement(
                        sql:
                            "INSERT INTO rank_steps (run_id, \(Schema.names(Schema.rankStepColumns))) VALUES (?, \(Schema.placeholders(Schema.rankStepColumns.count)))"
                    )
                    let insertKernel = try db.makeStatement(
                        sql:
                            "INSERT INTO kernels (run_id, \(Schema.names(Schema.kernelColumns))) VALUES (?, \(Schema.placeholders(Schema.kernelColumns.count)))"
                    )
                    var newIDs: [Int64] = []
                    let runs = try Row.fetchCursor(src, sql: "SELECT id, \(select(Schema.runColumns)) FROM runs ORDER BY id")
                    while let run = try runs.next() {
                        let id: Int64 = try run.decode(atIndex: 0)
                        try insertRun.execute(arguments: StatementArguments(run.databaseValues.dropFirst()))
                        let newID = db.lastInsertedRowID
                        let rows = try Row.fetchCursor(
                            src, sql: "SELECT \(select(Schema.rankStepColumns)) FROM rank_steps WHERE run_id = ?", arguments: [id])
                        while let row = try rows.next() {
                            insertRankStep.setUncheckedArguments(StatementArguments([newID.databaseValue] + row.databaseValues))
                            try insertRankStep.execute()
                        }
                        let kernels = try Row.fetchCursor(
                            src, sql: "SELECT \(select(Schema.kernelColumns)) FROM kernels WHERE run_id = ? ORDER BY rowid", arguments: [id])
                        while let k = try kernels.next() {
                            insertKernel.setUncheckedArguments(StatementArguments([newID.databaseValue] + k.databaseValues))
                            try insertKernel.execute()
                        }
                        newIDs.append(newID)
                    }
                    return newIDs
                }
            }
        } catch {
            throw StoreError.wrap(error, path: source, doing: "merge the database")
        }
    }

    /// The schema version (1 to 4) of a merge source, checked to be an EPSim database this
    /// build can read.
    static func sourceVersion(_ queue: DatabaseQueue, path: String) throws -> Int {
        do {
            return try queue.read { db in
                try checkEPSimDatabase(db, path: path)
                let applied = try migrator.appliedIdentifiers(db)
                guard let last = Schema.versions.lastIndex(where: applied.contains), try db.tableExists("runs") else {
                    throw StoreError(.foreignDatabase, path: path, message: "has no EPSim schema version; nothing was merged from it")
                }
                return last + 1
            }
        } catch {
            throw StoreError.wrap(error, path: path, doing: "read the database")
        }
    }

    /// Whether two paths name one file (the same file reached by two spellings included).
    static func sameFile(_ a: String, _ b: String) -> Bool {
        let fm = FileManager.default
        guard let x = try? fm.attributesOfItem(atPath: a), let y = try? fm.attributesOfItem(atPath: b) else {
            return URL(fileURLWithPath: a).standardizedFileURL.path == URL(fileURLWithPath: b).standardizedFileURL.path
        }
        return (x[.systemFileNumber] as? NSNumber) == (y[.systemFileNumber] as? NSNumber)
            && (x[.systemNumber] as? NSNumber) == (y[.systemNumber] as? NSNumber)
    }
}
