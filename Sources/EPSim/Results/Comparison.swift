/// Several runs side by side: one column per run, one row per metric, each with its
/// difference against the first column.
public struct Comparison: Sendable {
    /// A figure compared across runs.
    public struct Metric: Sendable {
        public var name: String
        public var value: @Sendable (RunSummary) -> Double
    }

    public struct Column: Sendable {
        public var label: String
        public var summary: RunSummary
        public init(label: String, summary: RunSummary) {
            self.label = label
            self.summary = summary
        }
    }

    public var columns: [Column]

    public init(columns: [Column]) { self.columns = columns }

    /// The compared metrics: step latency (max over ranks and steps), the spread of per-rank
    /// latency, and the per-rank figures shown in ``RankMetric/Places/compare``, averaged
    /// over ranks and steps (dense, barrier and launch gaps only when a column has them).
    public var metrics: [Metric] {
        [
            Metric(name: "step_latency_us") { $0.step_latency_us },
            Metric(name: "rank_latency_min_us") { $0.rank_latency_min_us },
            Metric(name: "rank_latency_mean_us") { $0.rank_latency_mean_us },
            Metric(name: "rank_latency_max_us") { $0.rank_latency_max_us },
        ]
            + RankMetric.shown(in: .compare, for: { m in columns.map { $0.summary.rank_mean[m] } }).map { m in
                Metric(name: m.name) { $0.rank_mean[m] }
            }
    }

    /// `values[metric][column]`, in the order of ``metrics``.
    public var values: [[Double]] { metrics.map { m in columns.map { m.value($0.summary) } } }
}
