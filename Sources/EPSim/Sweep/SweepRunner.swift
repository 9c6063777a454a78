import Foundation

/// Runs the points of a sweep in parallel: reads every point's scenario first (so a bad
/// value fails before anything runs, or is set aside with ``loadValid()``), then hands them
/// to `jobs` workers, each running the caller's work on one point at a time, and collects
/// what each returns. Shared by `epsim sweep` and any library caller (calibration, serving
/// studies).
///
/// Deterministic in what it returns: results are keyed by point index and failures sorted
/// by it, whatever the threads' timing. ``stop()`` (e.g. on Ctrl-C or SIGTERM) stops
/// handing out points; those in flight finish.
///
/// ```swift
/// let sweep = try Sweep(varying: ["workload.tokens_per_rank=32,64"])
/// let runner = SweepRunner(scenarioPath: "Scenarios/balanced.yaml", points: sweep.points)
/// let scenarios = try runner.load()
/// let outcome = runner.run(scenarios, jobs: 2) { _, s in try Simulation.run(s).stepLatency }
/// ```
public final class SweepRunner: @unchecked Sendable {
    /// What a run of the workers gave back.
    public struct Outcome<T> {
        /// The work's value for each point that completed, by point index.
        public var results: [Int: T]
        /// `(point index, message)` for each point whose work threw, by index.
        public var failures: [(index: Int, message: String)]
        /// ``stop()`` was called before every point was handed out.
        public var stopped: Bool
    }

    public let scenarioPath: String
    public let points: [[Override]]
    /// The point indices to run (all, or one shard's).
    public let indices: [Int]
    private let lock = NSLock()
    private var pending: [Int] = []
    private var stopRequested = false
    private var done = 0
    private var text = ""

    public init(scenarioPath: String, points: [[Override]], indices: [Int]? = nil) {
        self.scenarioPath = scenarioPath
        self.points = points
        self.indices = indices ?? Array(points.indices)
    }

    /// The scenario file's text as read by the last ``load()`` or ``loadValid()`` (read once
    /// for every point, so that a pipe such as `<(cat f)` works and is stored as read).
    public var scenarioText: String { lock.withLock { text } }

    /// Reads every point's scenario, in parallel.
    ///
    /// - Throws: a ``ScenarioError`` when the file itself cannot be read or is not YAML, else
    ///   the ``SweepPointError`` of the lowest invalid point, so the message does not depend
    ///   on timing.
    public func load() throws -> [Int: Scenario] {
        let (scenarios, invalid) = try loadValid()
        if let first = invalid.first { throw first }
        return scenarios
    }

    /// Reads every point's scenario, in parallel, setting the invalid points aside (as
    /// `epsim sweep --skip-invalid` does): the scenarios of the valid points, and the errors
    /// of the others by point index.
    ///
    /// - Throws: a ``ScenarioError`` when the file itself cannot be read or is not YAML (no
    ///   point could be valid).
    public func loadValid() throws -> (scenarios: [Int: Scenario], invalid: [SweepPointError]) {
        let text = try Scenario.readText(path: scenarioPath)
        _ = try Scenario.composeRoot(text, file: scenarioPath)
        lock.withLock { self.text = text }
        let scenarios = Shared<[Int: Scenario]>([:])
        let failures = Shared<[SweepPointError]>([])
        let order = indices
        DispatchQueue.concurrentPerform(iterations: order.count) { k in
            let i = order[k]
            do {
                let s = try Scenario.load(path: scenarioPath, text: text, overrides: points[i])
                scenarios.update { $0[i] = s }
            } catch {
                let point = SweepPointError(index: i, point: points[i], scenarioPath: scenarioPath, error: error)
                failures.update { $0.append(point) }
            }
        }
        return (scenarios.value, failures.value.sorted { $0.index < $1.index })
    }

    /// Runs `work` on every loaded point with `jobs` workers; `progress(done, label)` is
    /// called after each point (on a worker thread). `work` and `progress` must be safe to
    /// call from several threads at once.
    public func run<T: Sendable>(
        _ scenarios: [Int: Scenario], jobs: Int, progress: @Sendable (Int, String) -> Void = { _, _ in },
        work: @Sendable (Int, Scenario) throws -> T
    ) -> Outcome<T> {
        lock.withLock {
            // Only the loaded points: the invalid ones ``loadValid()`` set aside are not run.
            pending = indices.filter { scenarios[$0] != nil }.reversed()
            done = 0
        }
        let results = Shared<[Int: T]>([:])
        let failures = Shared<[(index: Int, message: String)]>([])
        DispatchQueue.concurrentPerform(iterations: min(max(jobs, 1), max(lock.withLock { pending.count }, 1))) { _ in
            while let i = take() {
                let label = points[i].map(\.description).joined(separator: " ")
                do {
                    let value = try work(i, scenarios[i]!)
                    results.update { $0[i] = value }
                } catch {
                    failures.update { $0.append((i, label.isEmpty ? "\(error)" : "\(label): \(error)")) }
                }
                progress(
                    lock.withLock {
                        done += 1; return done
                    }, label)
            }
        }
        return Outcome(results: results.value, failures: failures.value.sorted { $0.index < $1.index }, stopped: lock.withLock { stopRequested })
    }

    /// Stops handing out points; those in flight finish. Called before ``run(_:jobs:progress:work:)``
    /// (a signal during the load), it makes the run hand out none.
    public func stop() { lock.withLock { stopRequested = true } }

    /// ``stop()`` was called: long work on a point (a serving run's steps) may end early.
    public var isStopped: Bool { lock.withLock { stopRequested } }

    private func take() -> Int? { lock.withLock { stopRequested ? nil : pending.popLast() } }
}

/// A sweep point whose scenario is invalid: its index, its overrides and the scenario's
/// error, said as the point rather than as the override's position, e.g.
///
/// ```
/// Scenarios/balanced.yaml: point 3 (workload.tokens_per_rank=-2): workload.tokens_per_rank: expected a non-negative number of tokens in 0...1048576, found -2
/// ```
///
/// The file's line and column are given when the error is in the file's own text (a key
/// the overrides do not set), not when it is in an override's value; an error in a file the
/// scenario names (a request trace) is located in that file. Without overrides (a single
/// run) the point is not named.
public struct SweepPointError: Error, Sendable, CustomStringConvertible {
    /// The point's index in the whole sweep (0-based, as in the `point` column).
    public var index: Int
    /// The point's `key.path=value` overrides.
    public var point: [Override]
    public var scenarioPath: String
    /// What the scenario reader said.
    public var error: ScenarioError

    public init(index: Int, point: [Override], scenarioPath: String, error: any Error) {
        self.index = index
        self.point = point
        self.scenarioPath = scenarioPath
        self.error = error as? ScenarioError ?? ScenarioError(.inconsistent, file: scenarioPath, keyPath: "", message: "\(error)")
    }

    /// The error is in the value of one of the point's overrides (whose line and column are
    /// those of the override's text, not of the file).
    public var isInOverride: Bool {
        point.contains { o in error.keyPath == o.keyPath || error.keyPath.hasPrefix(o.keyPath + ".") || error.keyPath.hasPrefix(o.keyPath + "[") }
    }

    /// The error is in a file the scenario names (a request or routing trace, a table), whose
    /// line is that file's.
    public var isInReferencedFile: Bool {
        // An override's value is read as a file named `scenario [key=value]`.
        !error.file.isEmpty && error.file != scenarioPath && !error.file.hasPrefix(scenarioPath + " [")
    }

    public var description: String {
        var location = isInReferencedFile ? error.file : scenarioPath
        if isInReferencedFile || !isInOverride, let line = error.line {
            location += ":\(line)"
            if let column = error.column { location += ":\(column)" }
        }
        let key = error.keyPath.isEmpty ? "" : "\(error.keyPath): "
        // A run without --vary has one point and no overrides: nothing to name.
        let at = point.isEmpty ? "" : " point \(index) (\(point.map(\.description).joined(separator: " "))):"
        return "\(location):\(at) \(key)\(error.message)"
    }
}

/// A value shared by worker threads, read and changed under a lock.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func update(_ change: (inout Value) -> Void) { lock.withLock { change(&stored) } }
}
