/// The user-facing figures of a run in microseconds, ready to print or encode as JSON.
public struct RunSummary: Codable, Sendable, Equatable {
    public struct RankRow: Codable, Sendable, Equatable {
        public var rank: Int
        public var step: Int
        public var tokens: Int
        public var start_us: Double
        public var end_us: Double
        public var e2e_us: Double
        public var busy_us: Double
        public var attention_us: Double
        public var shared_us: Double
        public var dense_us: Double
        public var dispatch_us: Double
        public var dispatch_wait_us: Double
        public var gemm_us: Double
        public var combine_us: Double
        public var combine_wait_us: Double
        public var exposed_comm_us: Double

        public init(
            rank: Int, step: Int, tokens: Int, start_us: Double, end_us: Double, e2e_us: Double, busy_us: Double,
            attention_us: Double, shared_us: Double, dense_us: Double, dispatch_us: Double, dispatch_wait_us: Double,
            gemm_us: Double, combine_us: Double, combine_wait_us: Double, exposed_comm_us: Double
        ) {
            self.rank = rank
            self.step = step
            self.tokens = tokens
            self.start_us = start_us
            self.end_us = end_us
            self.e2e_us = e2e_us
            self.busy_us = busy_us
            self.attention_us = attention_us
            self.shared_us = shared_us
            self.dense_us = dense_us
            self.dispatch_us = dispatch_us
            self.dispatch_wait_us = dispatch_wait_us
            self.gemm_us = gemm_us
            self.combine_us = combine_us
            self.combine_wait_us = combine_wait_us
            self.exposed_comm_us = exposed_comm_us
        }
    }

    /// Means over ranks and steps of the per-rank figures.
    public struct RankMeans: Codable, Sendable, Equatable {
        public var e2e_us: Double
        public var busy_us: Double
        public var attention_us: Double
        public var shared_us: Double
        public var dense_us: Double
        public var dispatch_us: Double
        public var dispatch_wait_us: Double
        public var gemm_us: Double
        public var combine_us: Double
        public var combine_wait_us: Double
        public var exposed_comm_us: Double

        init(_ rows: [RankRow]) {
            let n = Double(max(rows.count, 1))
            func mean(_ f: (RankRow) -> Double) -> Double { rows.map(f).reduce(0, +) / n }
            e2e_us = mean(\.e2e_us)
            busy_us = mean(\.busy_us)
            attention_us = mean(\.attention_us)
            shared_us = mean(\.shared_us)
            dense_us = mean(\.dense_us)
            dispatch_us = mean(\.dispatch_us)
            dispatch_wait_us = mean(\.dispatch_wait_us)
            gemm_us = mean(\.gemm_us)
            combine_us = mean(\.combine_us)
            combine_wait_us = mean(\.combine_wait_us)
            exposed_comm_us = mean(\.exposed_comm_us)
        }
    }

    public var scenario: String
    public var schedule: String
    public var ranks: Int
    public var steps: Int
    /// Maximum over steps of the step latency (itself the maximum over ranks).
    public var step_latency_us: Double
    public var step_latencies_us: [Double]
    /// Percentiles of step latency over steps (nearest rank): p50, p90, p99, max.
    public var step_latency_p50_us: Double
    public var step_latency_p90_us: Double
    public var step_latency_p99_us: Double
    /// Mean and spread of per-rank step latency over all ranks and steps.
    public var rank_latency_mean_us: Double
    public var rank_latency_min_us: Double
    public var rank_latency_max_us: Double
    public var slowest_rank: Int
    /// Total RECV wait each rank caused by arriving last, indexed by rank.
    public var blocked_wait_us: [Double]
    public var kernels: Int
    public var flows: Int
    public var messages: Int64
    public var rank_mean: RankMeans
    /// One row per rank and step (empty when read back from a run stored without them).
    public var per_rank: [RankRow]

    public init(result: RunResult) {
        scenario = result.scenarioName
        schedule = result.schedule
        ranks = result.ranks
        steps = result.steps
        step_latency_us = result.stepLatency.micros
        step_latencies_us = result.stepLatencies.map(\.micros)
        step_latency_p50_us = Self.percentile(step_latencies_us, 50)
        step_latency_p90_us = Self.percentile(step_latencies_us, 90)
        step_latency_p99_us = Self.percentile(step_latencies_us, 99)
        let latencies = result.rankSteps.map { $0.latency.micros }
        rank_latency_mean_us = latencies.reduce(0, +) / Double(max(latencies.count, 1))
        rank_latency_min_us = latencies.min() ?? 0
        rank_latency_max_us = latencies.max() ?? 0
        slowest_rank = result.slowestRank
        blocked_wait_us = result.blockedWait.map(\.micros)
        kernels = result.kernelCount
        flows = result.flowCount
        messages = result.messageCount
        per_rank = result.rankSteps.map { r in
            RankRow(
                rank: Int(r.rank), step: Int(r.step), tokens: r.tokens,
                start_us: r.start.micros, end_us: r.end.micros, e2e_us: r.latency.micros, busy_us: r.busy.micros,
                attention_us: r.attention.micros, shared_us: r.shared.micros, dense_us: r.dense.micros,
                dispatch_us: r.dispatch.micros, dispatch_wait_us: r.dispatchWait.micros, gemm_us: r.gemm.micros,
                combine_us: r.combine.micros, combine_wait_us: r.combineWait.micros,
                exposed_comm_us: r.exposedCommunication.micros)
        }
        rank_mean = RankMeans(per_rank)
    }

    /// The nearest-rank percentile: the smallest value with at least `p`% of values at or below it.
    public static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}
