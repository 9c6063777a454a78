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
    /// latency, and the per-rank breakdown averaged over ranks and steps.
    public static let metrics: [Metric] = [
        Metric(name: "step_latency_us") { $0.step_latency_us },
        Metric(name: "rank_latency_min_us") { $0.rank_latency_min_us },
        Metric(name: "rank_latency_mean_us") { $0.rank_latency_mean_us },
        Metric(name: "rank_latency_max_us") { $0.rank_latency_max_us },
        Metric(name: "attention_us") { $0.rank_mean.attention_us },
        Metric(name: "shared_us") { $0.rank_mean.shared_us },
        Metric(name: "dispatch_us") { $0.rank_mean.dispatch_us },
        Metric(name: "dispatch_wait_us") { $0.rank_mean.dispatch_wait_us },
        Metric(name: "gemm_us") { $0.rank_mean.gemm_us },
        Metric(name: "combine_us") { $0.rank_mean.combine_us },
        Metric(name: "combine_wait_us") { $0.rank_mean.combine_wait_us },
        Metric(name: "exposed_comm_us") { $0.rank_mean.exposed_comm_us },
    ]

    /// `values[metric][column]`.
    public var values: [[Double]] { Self.metrics.map { m in columns.map { m.value($0.summary) } } }
}
