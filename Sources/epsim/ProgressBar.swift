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
        // Fit the terminal: the bar shrinks, the label is cut, never a wrapped line.
        var size = winsize()
        let columns = ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 80
        let width = max(10, min(30, columns - 50))
        let filled = Int((fraction * Double(width)).rounded(.down))
        let eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let tail = String(format: " [%@] %3.0f%% %.1f s, ETA %.1f s", bar, 100 * fraction, elapsed, eta)
        let room = max(0, columns - 1 - tail.count)
        let head = label.count > room ? String(label.prefix(max(0, room - 1))) + "…" : label
        // \r, then erase to the end of the line (ESC [ K), then the line.
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + head + tail).utf8))
        drawn = true
    }

    /// Erases the bar (if one was drawn).
    func finish() {
        lock.lock()
        defer { lock.unlock() }
        guard drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        drawn = false
    }
}
