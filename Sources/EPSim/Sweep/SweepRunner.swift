import Foundation

/// Runs the points of a sweep in parallel: reads every point's scenario first (so a bad
/// value fails before anything runs), then hands them to `jobs` workers, each running the
/// caller's work on one point at a time, and collects what each returns. Shared by
/// `epsim sweep` and any library caller (calibration, serving studies).
///
/// Deterministic in what it returns: results are keyed by point index and failures sorted
/// by it, whatever the threads' timing. ``stop()`` (e.g. on Ctrl-C) stops handing out
/// points; those in flight finish.
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

    public init(scenarioPath: String, points: [[Override]], indices: [Int]? = nil) {
        self.scenarioPath = scenarioPath
        self.points = points
        self.indices = indices ?? Array(points.indices)
    }

    /// Reads every point's scenario, in parallel. Throws the error of the lowest failing
    /// point (a ``ScenarioError`` for a bad value), so the message does not depend on timing.
    public func load() throws -> [Int: Scenario] {
        let scenarios = Shared<[Int: Scenario]>([:])
        let failures = Shared<[Int: any Error]>([:])
        let order = indices
        DispatchQueue.concurrentPerform(iterations: order.count) { k in
            let i = order[k]
            do {
                let s = try Scenario.load(path: scenarioPath, overrides: points[i])
                scenarios.update { $0[i] = s }
            } catch {
                failures.update { $0[i] = error }
            }
        }
        if let first = failures.value.min(by: { $0.key < $1.key }) { throw first.value }
        return scenarios.value
    }

    /// Runs `work` on every loaded point with `jobs` workers; `progress(done, label)` is
    /// called after each point (on a worker thread). `work` and `progress` must be safe to
    /// call from several threads at once.
    public func run<T: Sendable>(
        _ scenarios: [Int: Scenario], jobs: Int, progress: @Sendable (Int, String) -> Void = { _, _ in },
        work: @Sendable (Int, Scenario) throws -> T
    ) -> Outcome<T> {
        lock.withLock {
            pending = indices.reversed()
            stopRequested = false
            done = 0
        }
        let results = Shared<[Int: T]>([:])
        let failures = Shared<[(index: Int, message: String)]>([])
        DispatchQueue.concurrentPerform(iterations: min(max(jobs, 1), max(indices.count, 1))) { _ in
            while let i = take() {
                let label = points[i].map(\.description).joined(separator: " ")
                do {
                    let value = try work(i, scenarios[i]!)
                    results.update { $0[i] = value }
                } catch {
                    failures.update { $0.append((i, "\(label): \(error)")) }
                }
                progress(lock.withLock { done += 1; return done }, label)
            }
        }
        return Outcome(results: results.value, failures: failures.value.sorted { $0.index < $1.index }, stopped: lock.withLock { stopRequested })
    }

    /// Stops handing out points; those in flight finish.
    public func stop() { lock.withLock { stopRequested = true } }

    private func take() -> Int? { lock.withLock { stopRequested ? nil : pending.popLast() } }
}

/// A value shared by worker threads, read and changed under a lock.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func update(_ change: (inout Value) -> Void) { lock.withLock { change(&stored) } }
}
