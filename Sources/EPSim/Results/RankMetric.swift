import EventCore

/// One per-rank figure of a step: the single list of what a run reports per rank.
///
/// Every place that shows or keeps per-rank figures iterates ``RankMetric/allCases``, in
/// this order: the rows and means of ``RunSummary`` (and so the JSON of `epsim run
/// --format json` and `epsim runs show`), the columns of the run database's `rank_steps`
/// (written, read back and merged), the metrics of ``Comparison`` (`epsim compare`), the
/// per-rank table of `epsim run` and the table and CSV of `epsim sweep`. A figure added here
/// appears everywhere its ``shown`` says, and in the database.
///
/// Each figure is read from ``RankStepResult`` (the engine's accumulators, whose names stay
/// as they are) exactly, in picoseconds or as a count; the user-facing value is microseconds
/// (`name` ends in `_us`), the stored one integer picoseconds (`column` ends in `_ps`).
///
/// ```swift
/// let row = RunSummary.RankRow(result.rankStep(rank: 0, step: 0))
/// row[.dispatchWait]               // 25.706 (µs)
/// RankMetric.dispatchWait.name     // "dispatch_wait_us"
/// RankMetric.dispatchWait.column   // "dispatch_wait_ps"
/// ```
public enum RankMetric: Int, CaseIterable, Sendable {
    case tokens, start, end, e2e, busy, attention, shared, dense, dispatch, dispatchWait, gemm, combine, combineWait, exposedComm
    case barrier, launchGaps, compute

    /// What a figure counts.
    public enum Unit: Sendable {
        /// A number of tokens: shown and stored as an integer.
        case count
        /// A time: exact in integer picoseconds, shown in microseconds.
        case time
    }

    /// Where a figure is shown besides the database (which keeps every one).
    public struct Places: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// A row of ``RunSummary/per_rank`` (JSON).
        public static let row = Places(rawValue: 1)
        /// ``RunSummary/rank_mean``: the mean over ranks and steps (JSON).
        public static let mean = Places(rawValue: 2)
        /// The per-rank table of `epsim run` and `epsim runs show`.
        public static let table = Places(rawValue: 4)
        /// A metric of ``Comparison`` (`epsim compare`), as the mean.
        public static let compare = Places(rawValue: 8)
        /// A column of `epsim sweep`'s table and CSV, as the mean.
        public static let sweep = Places(rawValue: 16)
        /// In the table and the comparison only when some rank of some run has it nonzero
        /// (dense layers, BARRIER kernels, launch gaps): present where they make up the e2e,
        /// absent from the common runs that have none.
        public static let whenUsed = Places(rawValue: 32)
    }

    /// How a figure is read from (and, unless derived, written back into) a ``RankStepResult``.
    enum Access {
        case count(WritableKeyPath<RankStepResult, Int>)
        case time(WritableKeyPath<RankStepResult, SimTime>)
        /// Computed from the stored figures; stored in the database for SQL, never assigned.
        case derived(KeyPath<RankStepResult, SimTime>)
    }

    /// The single definition of every figure: base name (snake case, no unit), doc, places, accessor.
    var definition: (base: String, doc: String, shown: Places, access: Access) {
        switch self {
        case .tokens: ("tokens", "the rank's tokens in this step", [.row, .table], .count(\.tokens))
        case .start: ("start", "start of the rank's first kernel of the step", [.row], .time(\.start))
        case .end: ("end", "end of the rank's last kernel of the step", [.row], .time(\.end))
        case .e2e: ("e2e", "the rank's step latency: end minus start", [.row, .mean, .table], .derived(\.latency))
        case .busy: ("busy", "kernel time minus wait: time the rank's SMs did work", [.row, .mean], .time(\.busy))
        case .attention: ("attention", "ATTN0 + ATTN1", [.row, .mean, .table, .compare], .time(\.attention))
        case .shared: ("shared", "shared experts (SHARED)", [.row, .mean, .table, .compare], .time(\.shared))
        case .dense: ("dense", "dense layers' MLP (DENSE)", [.row, .mean, .table, .compare, .whenUsed], .time(\.dense))
        case .dispatch:
            ("dispatch", "dispatch kernels (SEND-D, RECV-D or DISPATCH), wait included", [.row, .mean, .table, .compare], .time(\.dispatch))
        case .dispatchWait:
            ("dispatch_wait", "the part of dispatch spent waiting for arrivals", [.row, .mean, .table, .compare, .sweep], .time(\.dispatchWait))
        case .gemm: ("gemm", "routed experts' grouped GEMM (MLP)", [.row, .mean, .table, .compare], .time(\.gemm))
        case .combine:
            ("combine", "combine kernels (SEND-C, RECV-C or COMBINE), wait included", [.row, .mean, .table, .compare], .time(\.combine))
        case .combineWait:
            ("combine_wait", "the part of combine spent waiting for arrivals", [.row, .mean, .table, .compare, .sweep], .time(\.combineWait))
        case .exposedComm:
            (
                "exposed_comm", "e2e minus compute and launch gaps on the compute stream: communication overlap did not hide",
                [.row, .mean, .table, .compare, .sweep], .derived(\.exposedCommunication)
            )
        case .barrier:
            ("barrier", "explicit BARRIER kernels (all of it waiting for every rank)", [.row, .mean, .table, .compare, .whenUsed], .time(\.barrier))
        case .launchGaps:
            ("launch_gaps", "idle launch gaps before kernels on the compute stream", [.row, .mean, .table, .compare, .whenUsed], .time(\.launchGaps))
        case .compute:
            ("compute", "compute kernels (attention, shared, GEMM, dense) on the compute stream", [], .time(\.computeOnComputeStream))
        }
    }

    /// The metrics shown in `place`, in order.
    public static func shown(in place: Places) -> [RankMetric] { allCases.filter { $0.shown.contains(place) } }

    /// The metrics shown in `place` for these figures: those marked ``Places/whenUsed`` only
    /// when `value` is nonzero for one of them.
    public static func shown(in place: Places, for value: (RankMetric) -> [Double]) -> [RankMetric] {
        shown(in: place).filter { !$0.shown.contains(.whenUsed) || value($0).contains { $0 != 0 } }
    }

    public var unit: Unit {
        if case .count = definition.access { return .count }
        return .time
    }

    /// The user-facing name (JSON keys, table and CSV headers): `dispatch_wait_us`; `tokens`.
    public var name: String { unit == .time ? definition.base + "_us" : definition.base }

    /// The column of `rank_steps` in the run database: `dispatch_wait_ps` (integer picoseconds); `tokens`.
    public var column: String { unit == .time ? definition.base + "_ps" : definition.base }

    /// One line on what the figure measures (documented in `docs/database.md`).
    public var doc: String { definition.doc }

    /// Where the figure is shown besides the database.
    public var shown: Places { definition.shown }

    /// Whether the figure is computed from the others (`e2e`, `exposed_comm`) rather than kept
    /// in ``RankStepResult``; such a figure is stored for SQL but not read back.
    public var isDerived: Bool {
        if case .derived = definition.access { return true }
        return false
    }

    /// The figure, exact: picoseconds for a time, the count for tokens.
    public func exact(_ r: RankStepResult) -> Int64 {
        switch definition.access {
        case .count(let k): Int64(r[keyPath: k])
        case .time(let k): r[keyPath: k].picos
        case .derived(let k): r[keyPath: k].picos
        }
    }

    /// The figure as shown: microseconds for a time, the count for tokens.
    public func value(_ r: RankStepResult) -> Double {
        switch definition.access {
        case .count(let k): Double(r[keyPath: k])
        case .time(let k): r[keyPath: k].micros
        case .derived(let k): r[keyPath: k].micros
        }
    }

    /// Sets the figure from its exact value (as read back from the database); a derived
    /// figure is left alone, since it follows from the others.
    ///
    /// - Returns: false when `exact` does not fit the figure (a count beyond `Int`).
    @discardableResult
    public func assign(_ exact: Int64, to r: inout RankStepResult) -> Bool {
        switch definition.access {
        case .count(let k):
            guard let n = Int(exactly: exact) else { return false }
            r[keyPath: k] = n
        case .time(let k): r[keyPath: k] = SimTime(picos: exact)
        case .derived: break
        }
        return true
    }
}
