import EPSim
import EventCore
import GRDB

/// The run database's tables, column by column, at schema version 4: what creates them, the
/// `*_us` views over them, the migration from version 3, and the reading of an older database
/// as version-4 rows (used by the migration and by `db merge` of an older source).
///
/// Every simulated time is an INTEGER of picoseconds (`*_ps`), exactly the engine's
/// ``SimTime``; the views `runs_us`, `rank_steps_us` and `kernels_us` show the same rows
/// with those times as REAL microseconds under the version-3 names (`*_us`).
enum Schema {
    /// The schema versions this build knows, oldest first (GRDB migration identifiers).
    static var versions: [String] { RunStore.migrations.map(\.identifier) }

    /// A column: its name without unit and how it is kept.
    struct Column {
        enum Kind {
            case integer, real, text
            /// A simulated time: INTEGER picoseconds named `*_ps`, shown as `*_us` in the view.
            case time
        }
        var base: String
        var kind: Kind
        var nullable = false
        /// What the column was at schema version 3 and earlier (nil: new in version 4), and
        /// the first version that had it.
        var before4: Before4? = .same(since: 1)

        enum Before4 {
            /// The same column (a time as REAL microseconds named `*_us`).
            case same(since: Int)
            /// An SQL expression over version-3 columns (`epsim_us_to_ps` converts a time).
            case expression(String)
        }

        init(_ base: String, _ kind: Kind, nullable: Bool = false, before4: Before4? = .same(since: 1)) {
            self.base = base
            self.kind = kind
            self.nullable = nullable
            self.before4 = before4
        }

        /// The name at version 4.
        var name: String { kind == .time ? base + "_ps" : base }
        /// The name in the `*_us` view (and at version 3).
        var shownName: String { kind == .time ? base + "_us" : base }

        var definition: String {
            let type =
                switch kind {
                case .integer, .time: "INTEGER"
                case .real: "REAL"
                case .text: "TEXT"
                }
            return "\(name) \(type)" + (nullable ? "" : " NOT NULL")
        }

        /// The column as the view shows it.
        var viewExpression: String { kind == .time ? "\(name) / 1e6 AS \(shownName)" : name }

        /// The column's name in a database at `version`, or nil when that version did not have it.
        func storedName(atVersion version: Int) -> String? {
            if version >= 4 { return name }
            switch before4 {
            case .same(let since) where since <= version: return shownName
            default: return nil
            }
        }

        /// An expression giving this column's version-4 value from a database at `version`.
        func select(from version: Int) -> String {
            if version >= 4 { return name }
            switch before4 {
            case .none: return nullable ? "NULL" : "0"
            case .same(let since) where since > version: return "NULL"
            case .same: return kind == .time ? "\(Schema.microsToPicos.name)(\(shownName))" : name
            case .expression(let sql): return sql
            }
        }
    }

    /// `runs`, after its `id`.
    static let runColumns: [Column] = [
        Column("created_at", .text), Column("scenario_name", .text), Column("scenario_path", .text), Column("scenario_text", .text),
        Column("scenario_hash", .text), Column("seed", .integer), Column("schedule", .text), Column("tool_version", .text),
        Column("ranks", .integer), Column("steps", .integer), Column("step_latency", .time), Column("rank_latency_mean", .time),
        Column("rank_latency_min", .time), Column("rank_latency_max", .time), Column("slowest_rank", .integer),
        Column("kernel_count", .integer), Column("flow_count", .integer), Column("message_count", .integer),
        Column("wall_time_s", .real), Column("timeline", .text), Column("summary_json", .text),
    ]

    /// `rank_steps`, after `run_id`: the step, the rank and every ``RankMetric``.
    static let rankStepColumns: [Column] =
        [Column("step", .integer), Column("rank", .integer)]
        + RankMetric.allCases.map { m in
            let kind: Column.Kind = m.unit == .count ? .integer : .time
            let base = String(m.column.dropLast(kind == .time ? 3 : 0))
            let us = Schema.microsToPicos.name
            switch m {
            // Version 3 kept e2e as REAL; end minus start is its definition, exact.
            case .e2e: return Column(base, kind, before4: .expression("\(us)(end_us) - \(us)(start_us)"))
            // Version 3 did not keep these; reading it back folded launch gaps into compute.
            case .barrier, .launchGaps: return Column(base, kind, before4: nil)
            case .compute: return Column(base, kind, before4: .expression("\(us)(end_us) - \(us)(start_us) - \(us)(exposed_comm_us)"))
            default: return Column(base, kind)
            }
        }

    /// `kernels`, after `run_id`.
    static let kernelColumns: [Column] = [
        Column("step", .integer), Column("rank", .integer), Column("layer", .integer), Column("micro_batch", .text),
        Column("kind", .text), Column("stream", .text), Column("start", .time), Column("end", .time), Column("wait", .time),
        Column("bytes_out", .integer), Column("bytes_in", .integer), Column("tokens", .integer),
        Column("blocker_rank", .integer, nullable: true), Column("last_arrival", .time, nullable: true),
        Column("send_end", .time, nullable: true, before4: .same(since: 2)), Column("blame", .text, nullable: true, before4: .same(since: 3)),
        Column("blocker_lag", .time, nullable: true, before4: .same(since: 3)),
    ]

    static func names(_ columns: [Column]) -> String { columns.map(\.name).joined(separator: ", ") }

    /// `?, ?, ?` for `count` values.
    static func placeholders(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }

    /// The version-4 tables (named with `suffix`, for the migration), without indexes and views.
    static func createTables(suffix: String = "") -> String {
        func body(_ columns: [Column]) -> String { columns.map { "    " + $0.definition }.joined(separator: ",\n") }
        return """
            CREATE TABLE runs\(suffix) (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
            \(body(runColumns))
            );
            CREATE TABLE rank_steps\(suffix) (
                run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            \(body(rankStepColumns)),
                PRIMARY KEY (run_id, step, rank)
            ) WITHOUT ROWID;
            CREATE TABLE kernels\(suffix) (
                run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            \(body(kernelColumns))
            );
            """
    }

    /// The indexes and the `*_us` views of version 4.
    static let indexesAndViews = """
        CREATE INDEX runs_by_scenario ON runs(scenario_name, id);
        CREATE INDEX kernels_by_run_rank ON kernels(run_id, rank, start_ps);
        CREATE VIEW runs_us AS SELECT id, \(runColumns.map(\.viewExpression).joined(separator: ", ")) FROM runs;
        CREATE VIEW rank_steps_us AS SELECT run_id, \(rankStepColumns.map(\.viewExpression).joined(separator: ", ")) FROM rank_steps;
        CREATE VIEW kernels_us AS SELECT run_id, \(kernelColumns.map(\.viewExpression).joined(separator: ", ")) FROM kernels;
        """

    /// Version 3 to 4, in the migration's transaction: new tables, every row copied with its
    /// times converted (``picos(micros:)``), the old tables dropped, run ids and the
    /// AUTOINCREMENT counter kept (so a deleted run's id is still never reused).
    static func migrateToVersion4(_ db: Database) throws {
        db.add(function: microsToPicos)
        let sequence = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'runs'")
        try db.execute(sql: createTables(suffix: "_v4"))
        try db.execute(
            sql: """
                INSERT INTO runs_v4 (id, \(names(runColumns))) SELECT id, \(runColumns.map { $0.select(from: 3) }.joined(separator: ", ")) FROM runs ORDER BY id;
                INSERT INTO rank_steps_v4 (run_id, \(names(rankStepColumns)))
                    SELECT run_id, \(rankStepColumns.map { $0.select(from: 3) }.joined(separator: ", ")) FROM rank_steps;
                INSERT INTO kernels_v4 (run_id, \(names(kernelColumns)))
                    SELECT run_id, \(kernelColumns.map { $0.select(from: 3) }.joined(separator: ", ")) FROM kernels ORDER BY rowid;
                DROP TABLE kernels;
                DROP TABLE rank_steps;
                DROP TABLE runs;
                ALTER TABLE runs_v4 RENAME TO runs;
                ALTER TABLE rank_steps_v4 RENAME TO rank_steps;
                ALTER TABLE kernels_v4 RENAME TO kernels;
                """)
        if let sequence {
            try db.execute(sql: "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'runs'", arguments: [sequence])
        }
        try db.execute(sql: indexesAndViews)
    }

    /// Temporary views named as the version-4 tables over the tables of an older database
    /// (`main.runs` ...), each column converted as the migration converts it: a reader of a
    /// version 1-3 database runs the version-4 queries on them, and the file stays as it was.
    /// `kernels` keeps the table's `rowid` as a column, the order the run produced its kernels.
    static func conversionViews(fromVersion version: Int) -> String {
        func columns(_ columns: [Column]) -> String { columns.map { "\($0.select(from: version)) AS \($0.name)" }.joined(separator: ", ") }
        return """
            CREATE TEMP VIEW runs AS SELECT id, \(columns(runColumns)) FROM main.runs;
            CREATE TEMP VIEW rank_steps AS SELECT run_id, \(columns(rankStepColumns)) FROM main.rank_steps;
            CREATE TEMP VIEW kernels AS SELECT rowid AS rowid, run_id, \(columns(kernelColumns)) FROM main.kernels;
            """
    }

    /// `epsim_us_to_ps(x)`: a version-3 time (REAL microseconds) as INTEGER picoseconds,
    /// rounded as ``SimTime/init(micros:)`` rounds (the value version 3 read back); NULL stays
    /// NULL. Anything else (text, a blob, a non-finite number, a time beyond ±106 days) fails
    /// the statement, and so the migration or merge, with a message naming the value.
    static let microsToPicos = DatabaseFunction("epsim_us_to_ps", argumentCount: 1, pure: true) { values in
        switch values[0].storage {
        case .null: return nil
        case .int64(let i): return try checkedPicos(Double(i))
        case .double(let d): return try checkedPicos(d)
        case .string(let s): throw conversionError("'\(s.prefix(40))'")
        case .blob: throw conversionError("a blob")
        }
    }

    /// SQLITE_MISMATCH, which ``StoreError`` reports as a bad value.
    static func conversionError(_ value: String) -> DatabaseError {
        DatabaseError(resultCode: .SQLITE_MISMATCH, message: "the time \(value) is not a number of microseconds that fits in 64-bit picoseconds")
    }

    static func checkedPicos(_ micros: Double) throws -> Int64 {
        guard let ps = picos(micros: micros) else { throw conversionError("\(micros)") }
        return ps
    }

    /// Microseconds to picoseconds exactly as ``SimTime/init(micros:)`` (to nearest, ties away
    /// from zero), or nil where that would trap: not finite, or beyond `Int64`.
    static func picos(micros: Double) -> Int64? {
        let x = (micros * 1_000_000).rounded(.toNearestOrAwayFromZero)
        guard x.isFinite, x >= -9_223_372_036_854_775_808.0, x < 9_223_372_036_854_775_808.0 else { return nil }
        return SimTime(micros: micros).picos
    }
}
