import Foundation

/// The host measurement `calibration/host/measure_host.py` writes (`host.csv`, one row per
/// trial: `case,kernels,idle_ms,trial,host_us,gpu_us,done_us`), reduced to medians: the
/// source of ``HostDefaults`` and of the wake-up figures in `docs/model.md`.
public struct HostMeasurements: Sendable {
    /// One trial.
    public struct Trial: Sendable, Equatable {
        /// `eager-add`, `eager-gemm`, `graph-replay`, `idle-replay` or `sync`.
        public var kind: String
        /// Kernels in the trial: the eager loop's length or the graph's nodes.
        public var kernels: Int
        /// GPU idle time before the trial (idle-replay), in milliseconds.
        public var idleMs: Int
        /// CPU time of the launch calls: per kernel (eager) or per replay (graph), us.
        public var hostMicros: Double
        /// GPU time between events around the launches, per kernel (eager) or per replay, us.
        public var gpuMicros: Double
        /// From the first launch call to the GPU's end, us.
        public var doneMicros: Double
    }

    public let trials: [Trial]

    /// The case names the harness writes.
    public static let kinds: Set<String> = ["eager-add", "eager-gemm", "graph-replay", "idle-replay", "sync"]

    /// Reads `host.csv`.
    ///
    /// - Throws: ``MeasurementError`` naming the file, line and column of a malformed cell.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw MeasurementError(file: path, message: "cannot read the file (missing, unreadable or not UTF-8)")
        }
        try self.init(csv: text, file: path)
    }

    /// Parses the text of `host.csv`; `file` names it in errors.
    public init(csv text: String, file: String) throws {
        let table = try CSVTable(text, file: file)
        trials = try table.rows.map { row in
            let kind = try row.string("case")
            guard Self.kinds.contains(kind) else { throw row.fail("column case: expected one of \(Self.kinds.sorted().joined(separator: ", ")), found \"\(kind)\"") }
            return Trial(
                kind: kind, kernels: try row.int("kernels", in: 0...1 << 20), idleMs: try row.int("idle_ms", in: 0...1 << 20),
                hostMicros: try row.double("host_us"), gpuMicros: try row.double("gpu_us"), doneMicros: try row.double("done_us"))
        }
    }

    /// The trials of one case.
    public func trials(_ kind: String, kernels: Int? = nil, idleMs: Int = 0) -> [Trial] {
        trials.filter { $0.kind == kind && (kernels == nil || $0.kernels == kernels) && $0.idleMs == idleMs }
    }

    /// The median of `values` (the mean of the middle two for an even count); nil if empty.
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Median host time of one eager launch of a small op.
    public var eagerLaunchMicros: Double? { Self.median(trials("eager-add").map(\.hostMicros)) }

    /// Median host time of one replay of a `kernels`-node graph.
    public func graphLaunchMicros(kernels: Int) -> Double? { Self.median(trials("graph-replay", kernels: kernels).map(\.hostMicros)) }

    /// How much longer a 512-kernel replay takes from launch call to GPU end after `idleMs`
    /// of idle than without (medians).
    public func wakeMicros(idleMs: Int) -> Double? {
        guard let idle = Self.median(trials("idle-replay", idleMs: idleMs).map(\.doneMicros)),
            let steady = Self.median(trials("idle-replay", idleMs: 0).map(\.doneMicros))
        else { return nil }
        return idle - steady
    }
}
