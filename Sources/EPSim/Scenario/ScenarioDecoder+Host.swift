import EventCore
import Foundation

extension ScenarioDecoder {
    /// `host:`: how each rank's CPU launches its kernels (``HostConfig``); nil when absent.
    func decodeHost(_ value: YAMLValue?, ranks: Int, seed: UInt64) throws -> HostConfig? {
        guard let value else { return nil }
        let map = try value.mapping()
        let mode = try map.required("mode", expected: "eager or graph").choice(HostConfig.Mode.allCases.map(\.rawValue))
        let launch = try micros(map, "launch_us", ranks: ranks, default: HostDefaults.eagerLaunchMicros)
        let graph = try micros(map, "graph_launch_us", ranks: ranks, default: HostDefaults.graphLaunchMicros)
        let gap = try micros(map, "step_gap_us", ranks: ranks, default: 0)
        let jitter = try map.optional("jitter_us").map { try decodeJitter($0, ranks: ranks) }
        let waits = try map.optional("waits_for_gpu")?.bool() ?? true
        try map.finish()
        return HostConfig(
            mode: HostConfig.Mode(rawValue: mode)!, launch: launch, graphLaunch: graph, stepGap: gap, jitterNanos: jitter,
            waitsForGPU: waits, seed: seed)
    }

    /// `jitter_us`: a number or per-rank list (the same delay before every step), or a
    /// distribution in microseconds drawn per rank and step (`constant`, `uniform`, `normal`,
    /// `lognormal`; negative draws are 0), held in nanoseconds.
    func decodeJitter(_ value: YAMLValue, ranks: Int) throws -> Distribution {
        let limit = Double(HostConfig.maxJitterNanos) / 1000
        guard value.isMapping else {
            let values = try value.perRank(count: ranks) { try $0.double(in: 0...limit, what: "a delay in microseconds") }
            return .list(values.map { Int(($0 * 1000).rounded()) })
        }
        let map = try value.mapping()
        let kind = try map.required("distribution", expected: "constant, uniform, normal or lognormal")
            .choice(["constant", "uniform", "normal", "lognormal"])
        func number(_ key: String, _ r: ClosedRange<Double>) throws -> Double {
            try map.required(key, expected: "a number").double(in: r)
        }
        let d: Distribution
        switch kind {
        case "constant": d = .constant(try number("value", 0...limit) * 1000)
        case "uniform":
            let lo = try number("min", 0...limit)
            let hiValue = try map.required("max", expected: "a number")
            let hi = try hiValue.double(in: 0...limit)
            guard hi >= lo else { throw hiValue.error(.inconsistent, "max (\(hi)) must not be below min (\(lo))") }
            d = .uniform(min: Int((lo * 1000).rounded()), max: Int((hi * 1000).rounded()))
        case "normal": d = .normal(mean: try number("mean", 0...limit) * 1000, stddev: try number("stddev", 0...limit) * 1000)
        default: d = .lognormal(mu: try number("mu", -50...50) + log(1000), sigma: try number("sigma", 0...20))
        }
        try map.finish()
        return d
    }
}

/// Host launch costs when a scenario's `host:` leaves them out, measured on one H200
/// machine (PLACEHOLDER until the measurement lands).
public enum HostDefaults {
    public static let eagerLaunchMicros = 5.0
    public static let graphLaunchMicros = 10.0
}
