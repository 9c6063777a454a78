/// The user-facing figures of a run in microseconds, ready to print or encode as JSON.
public struct RunSummary: Codable, Sendable, Equatable {
    /// One rank in one step: the ``RankMetric``s shown in a row, in µs for times.
    ///
    /// Encoded as `rank`, `step` and one key per metric shown in ``RankMetric/Places/row``
    /// (`tokens`, `e2e_us`, `dispatch_wait_us`, ...).
    public struct RankRow: Codable, Sendable, Equatable {
        public var rank: Int
        public var step: Int
        /// `values[metric.rawValue]` (zero for a metric not shown in a row).
        var values: [Double]

        /// The rank's figures in `r` (those shown in ``RankMetric/Places/row``).
        public init(_ r: RankStepResult) {
            rank = Int(r.rank)
            step = Int(r.step)
            values = RankMetric.allCases.map { $0.shown.contains(.row) ? $0.value(r) : 0 }
        }

        /// A metric's value: microseconds for a time, the count for tokens.
        public subscript(metric: RankMetric) -> Double {
            get { values[metric.rawValue] }
            set { values[metric.rawValue] = newValue }
        }

        /// The rank's tokens.
        public var tokens: Int { Int(exactly: self[.tokens]) ?? 0 }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: MetricKey.self)
            rank = try c.decode(Int.self, forKey: MetricKey("rank"))
            step = try c.decode(Int.self, forKey: MetricKey("step"))
            values = try RankMetric.allCases.map { m in try MetricKey.decode(m, from: c, if: .row) }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: MetricKey.self)
            try c.encode(rank, forKey: MetricKey("rank"))
            try c.encode(step, forKey: MetricKey("step"))
            for m in RankMetric.shown(in: .row) { try MetricKey.encode(m, self[m], in: &c) }
        }
    }

    /// Means over ranks and steps of the per-rank figures shown in ``RankMetric/Places/mean``.
    public struct RankMeans: Codable, Sendable, Equatable {
        /// `values[metric.rawValue]` (zero for a metric not averaged).
        var values: [Double]

        init(_ rows: [RankRow]) {
            let n = Double(max(rows.count, 1))
            values = RankMetric.allCases.map { m in
                m.shown.contains(.mean) ? rows.map { $0[m] }.reduce(0, +) / n : 0
            }
        }

        /// The mean of `metric` over ranks and steps.
        public subscript(metric: RankMetric) -> Double { values[metric.rawValue] }

        /// Figures added after a run was stored (`barrier_us`, `launch_gaps_us` before schema
        /// version 4) read as 0.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: MetricKey.self)
            values = try RankMetric.allCases.map { m in try MetricKey.decode(m, from: c, if: .mean) }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: MetricKey.self)
            for m in RankMetric.shown(in: .mean) { try MetricKey.encode(m, self[m], in: &c) }
        }
    }

    /// JSON keys named by ``RankMetric/name``.
    struct MetricKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }

        /// A metric shown in `place`, absent read as 0 (a count must be an integer); 0 for the others.
        static func decode(_ m: RankMetric, from c: KeyedDecodingContainer<MetricKey>, if place: RankMetric.Places) throws -> Double {
            guard m.shown.contains(place) else { return 0 }
            if m.unit == .count { return Double(try c.decodeIfPresent(Int.self, forKey: MetricKey(m.name)) ?? 0) }
            return try c.decodeIfPresent(Double.self, forKey: MetricKey(m.name)) ?? 0
        }

        /// A count as an integer, a time as a number of microseconds.
        static func encode(_ m: RankMetric, _ value: Double, in c: inout KeyedEncodingContainer<MetricKey>) throws {
            if m.unit == .count { try c.encode(Int64(exactly: value) ?? 0, forKey: MetricKey(m.name)) } else { try c.encode(value, forKey: MetricKey(m.name)) }
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
    /// Tokens kept per second per GPU over the run (``RunResult/acceptedTokensPerSecondPerGPU``):
    /// with multi-token prediction the accepted ones; nil for a stored run without it.
    public var accepted_tokens_per_s_per_gpu: Double?
    /// Tokens kept per step, summed over ranks (mean over steps).
    public var accepted_tokens_per_step: Double?
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
        accepted_tokens_per_s_per_gpu = result.acceptedTokensPerSecondPerGPU
        accepted_tokens_per_step = result.acceptedTokens.map { $0 / Double(max(result.steps, 1)) }
        per_rank = result.rankSteps.map(RankRow.init)
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
