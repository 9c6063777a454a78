import EPSim
import Foundation
import GRDB

extension RunStore {
    /// Copies every run of the database at `source` (with its per-rank rows and kernels)
    /// into this one, under new ids, in one transaction; returns the new ids in source order.
    ///
    /// Used to combine the databases of a sweep run in shards on several machines. The
    /// source is opened as an EPSim database first (so a foreign or older file is refused
    /// or migrated like any other) and is not otherwise changed.
    @discardableResult
    public func merge(from source: String) throws -> [Int64] {
        let sourceStore = try RunStore(path: source)
        let ids = try sourceStore.read { db in try Int64.fetchAll(db, sql: "SELECT id FROM runs ORDER BY id") }
        let columns =
            "created_at, scenario_name, scenario_path, scenario_text, scenario_hash, seed, schedule, tool_version, ranks, steps, step_latency_us, rank_latency_mean_us, rank_latency_min_us, rank_latency_max_us, slowest_rank, kernel_count, flow_count, message_count, wall_time_s, timeline, summary_json"
        let rankColumns = "step, rank, " + Self.rankStepMetrics.map(\.storedName).joined(separator: ", ")
        let kernelColumns =
            "step, rank, layer, micro_batch, kind, stream, start_us, end_us, wait_us, bytes_out, bytes_in, tokens, blocker_rank, last_arrival_us, send_end_us, blame, blocker_lag_us"
        do {
            return try pool.writeWithoutTransaction { db in
                try db.execute(sql: "ATTACH DATABASE ? AS source", arguments: [source])
                defer { try? db.execute(sql: "DETACH DATABASE source") }
                var newIDs: [Int64] = []
                try db.inTransaction(.immediate) {
                    for id in ids {
                        try db.execute(sql: "INSERT INTO main.runs (\(columns)) SELECT \(columns) FROM source.runs WHERE id = ?", arguments: [id])
                        let newID = db.lastInsertedRowID
                        try db.execute(
                            sql: "INSERT INTO main.rank_steps (run_id, \(rankColumns)) SELECT ?, \(rankColumns) FROM source.rank_steps WHERE run_id = ?",
                            arguments: [newID, id])
                        try db.execute(
                            sql:
                                "INSERT INTO main.kernels (run_id, \(kernelColumns)) SELECT ?, \(kernelColumns) FROM source.kernels WHERE run_id = ? ORDER BY rowid",
                            arguments: [newID, id])
                        newIDs.append(newID)
                    }
                    return .commit
                }
                return newIDs
            }
        } catch {
            throw StoreError.wrap(error, path: source, doing: "merge the database")
        }
    }
}
