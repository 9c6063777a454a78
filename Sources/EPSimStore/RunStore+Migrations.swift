import GRDB

extension RunStore {
    /// The schema's versions, oldest first: an identifier (as recorded in `grdb_migrations`)
    /// and the SQL that brings the previous version to it.
    ///
    /// Version 1: runs, per-rank results and the kernel timeline.
    /// Version 2: the kernel's send time, and the index for "kernels of a run on a rank".
    /// Version 3: why a waiting RECV's last message came late (`blame`) and how much of
    /// its wait the blocker caused (`blocker_lag_us`).
    /// Version 4: every simulated time an INTEGER of picoseconds (`*_ps`), exact, with
    /// `*_us` views; `rank_steps` also keeps barrier, launch gaps and compute (``Schema``).
    /// Version 5: serving runs (`epsim serve`): `serve_runs`, `serve_steps`,
    /// `serve_rank_steps`, `serve_requests` and their `*_us` views (``ServingSchema``).
    ///
    /// ``migrate(_:path:)`` applies them; a new version is appended here (``Schema/versions``
    /// lists these identifiers).
    static let migrations: [(identifier: String, migrate: @Sendable (Database) throws -> Void)] = [
        (
            "v1",
            { db in
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
        ),
        (
            "v2",
            { db in
                try db.execute(
                    sql: """
                        ALTER TABLE kernels ADD COLUMN send_end_us REAL;
                        CREATE INDEX kernels_by_run_rank ON kernels(run_id, rank, start_us);
                        """)
            }
        ),
        (
            "v3",
            { db in
                try db.execute(sql: "ALTER TABLE kernels ADD COLUMN blame TEXT; ALTER TABLE kernels ADD COLUMN blocker_lag_us REAL")
            }
        ),
        (
            "v4",
            { db in try Schema.migrateToVersion4(db) }
        ),
        (
            "v5",
            { db in try db.execute(sql: ServingSchema.tables) }
        ),
    ]

    /// The same versions as a GRDB `DatabaseMigrator`, to read `grdb_migrations` (and for
    /// tests that build an older database). EPSim itself migrates with ``migrate(_:path:)``,
    /// in one transaction for all versions, which this migrator (one transaction per
    /// version, the applied versions read before the first) does not do.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        for (identifier, migrate) in migrations { m.registerMigration(identifier, migrate: migrate) }
        return m
    }
}
