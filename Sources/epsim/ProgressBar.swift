import EPSim
import Foundation

/// A progress bar with an ETA on standard error, drawn only when standard error is a
/// terminal (nothing when piped or redirected), only for runs that last more than half a
/// second, at most five times a second, and erased when the run ends.
final class ProgressBar: @unchecked Sendable {
    private let label: String
    private let lock = NSLock()
    private let started = ContinuousClock.now
    private var lastDrawn: ContinuousClock.Instant?
    private var drawn = false
    let enabled: Bool

    init(label: String) {
        self.label = label
        let term = ProcessInfo.processInfo.environment["TERM"] ?? ""
        enabled = isatty(STDERR_FILENO) == 1 && term != "dumb"
    }

    /// The callback for ``SimulationOptions/progress``, nil when not drawing.
    var callback: (@Sendable (Int, Int) -> Void)? {
        guard enabled else { return nil }
        return { @Sendable [self] done, total in self.update(done: done, total: total) }
    }

    func update(done: Int, total: Int) {
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        let elapsed = (now - started).seconds
        guard elapsed >= 0.5, total > 0 else { return }
        if let lastDrawn, (now - lastDrawn).seconds < 0.2 { return }
        lastDrawn = now
        let fraction = min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int((fraction * Double(width)).rounded(.down))
        let eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = String(format: "\r%@ [%@] %3.0f%%  %.1f s elapsed, ETA %.1f s ", label, bar, 100 * fraction, elapsed, eta)
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    /// Erases the bar (if one was drawn).
    func finish() {
        lock.lock()
        defer { lock.unlock() }
        guard drawn else { return }
        FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: 100) + "\r").utf8))
        drawn = false
    }
}
