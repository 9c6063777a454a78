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
        let jitter = try map.optional("jitter_us").map { try decodeHostDelay($0, ranks: ranks) }
        let waits = try map.optional("waits_for_gpu")?.bool() ?? true
        let wake = try map.optional("wake_us").map { try decodeHostDelay($0, ranks: ranks) }
        let threshold = try map.optional("wake_after_idle_us")?.double(in: 0...ScenarioLimits.maxMicros, what: "an idle time in microseconds")
            ?? HostDefaults.wakeAfterIdleMicros
        try map.finish()
        var host = HostConfig(
            mode: HostConfig.Mode(rawValue: mode)!, launch: launch, graphLaunch: graph, stepGap: gap, jitterNanos: jitter,
            waitsForGPU: waits, seed: seed)
        host.wakeNanos = wake
        host.wakeAfterIdle = SimTime(micros: threshold)
        return host
    }

    /// `jitter_us` and `wake_us`: a number or per-rank list (the same delay before every step), or a
    /// distribution in microseconds drawn per rank and step (`constant`, `uniform`, `normal`,
    /// `lognormal`; negative draws are 0), held in nanoseconds.
    func decodeHostDelay(_ value: YAMLValue, ranks: Int) throws -> Distribution {
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

/// Host costs when a scenario's `host:` leaves them out: medians of the stored measurement
/// `calibration/measurements/2026-12-07-h100-host/host.csv` (PyTorch 2.11 on one H100 and
/// its Xeon host, `calibration/host/measure_host.py`), which ``HostMeasurements`` recomputes
/// and a test compares with these constants.
public enum HostDefaults {
    /// One eager launch of a small PyTorch op (`eager-add`, 256 back to back): 6.53 us.
    public static let eagerLaunchMicros = 6.5
    /// One replay of a 512-kernel CUDA graph (a decode step's order of magnitude): 17.8 us.
    public static let graphLaunchMicros = 17.8
    /// The GPU idle time from which the first launch pays a wake-up: at 10 ms idle the
    /// replay's launch-to-done time had grown by 134 us (1 ms: 9 us).
    public static let wakeAfterIdleMicros = 10_000.0
}
