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

    static func mean(_ s: RunSummary, _ f: (RunSummary.RankRow) -> Double) -> Double {
        s.per_rank.isEmpty ? 0 : s.per_rank.map(f).reduce(0, +) / Double(s.per_rank.count)
    }

    /// The compared metrics: step latency (max over ranks and steps), the spread of per-rank
    /// latency, and the per-rank breakdown averaged over ranks and steps.
    public static let metrics: [Metric] = [
        Metric(name: "step_latency_us") { $0.step_latency_us },
        Metric(name: "rank_latency_min_us") { $0.rank_latency_min_us },
        Metric(name: "rank_latency_mean_us") { $0.rank_latency_mean_us },
        Metric(name: "rank_latency_max_us") { $0.rank_latency_max_us },
        Metric(name: "attention_us") { mean($0) { $0.attention_us } },
        Metric(name: "shared_us") { mean($0) { $0.shared_us } },
        Metric(name: "dispatch_us") { mean($0) { $0.dispatch_us } },
        Metric(name: "dispatch_wait_us") { mean($0) { $0.dispatch_wait_us } },
        Metric(name: "gemm_us") { mean($0) { $0.gemm_us } },
        Metric(name: "combine_us") { mean($0) { $0.combine_us } },
        Metric(name: "combine_wait_us") { mean($0) { $0.combine_wait_us } },
        Metric(name: "exposed_comm_us") { mean($0) { $0.exposed_comm_us } },
    ]

    /// `values[metric][column]`.
    public var values: [[Double]] { Self.metrics.map { m in columns.map { m.value($0.summary) } } }
}
