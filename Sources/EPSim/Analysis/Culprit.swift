import Foundation

/// The rank the others waited for most, and whether that stands out from noise: the one
/// culprit that `run`, `runs show` and `explain` name.
///
/// The measure is each rank's *blocked wait*: RECV wait of other ranks for which it was the
/// last arrival, summed over receivers (``RunResult/blockedWait``). Under balanced or
/// uniform routing every rank is last somewhere by chance, so the largest value alone says
/// little. The test: with `n` ranks whose values scatter like a normal distribution, the
/// largest lies about `sqrt(2 ln n)` standard deviations above the median (the expected
/// maximum of `n` normal draws, Gumbel's approximation), so a rank is called the culprit only
/// when it lies more than `sqrt(2 ln n) + 1` robust standard deviations (1.4826 x the median
/// absolute deviation) above the median. With fewer than 8 ranks there is no spread to judge
/// against and the largest is named as it is.
public struct Culprit: Sendable, Equatable {
    /// Below this many ranks the largest is named without a test.
    public static let minimumRanksForTest = 8

    public var rank: Int
    /// Other ranks with exactly the same wait (then none is the culprit).
    public var tiedWith: [Int]
    /// Ranks compared.
    public var ranks: Int
    /// Its blocked wait, µs.
    public var waitMicros: Double
    public var medianMicros: Double
    /// Robust standard deviation of the ranks' blocked waits (1.4826 x MAD), µs.
    public var spreadMicros: Double
    /// How many robust standard deviations above the median it lies (infinite when the
    /// spread is zero and it lies above).
    public var score: Double
    /// The score needed: `sqrt(2 ln n) + 1`, or nil when there are too few ranks to test.
    public var threshold: Double?
    /// The lead is larger than noise among `n` ranks would give (always true untested).
    public var standsOut: Bool { tiedWith.isEmpty && (threshold.map { score > $0 } ?? true) }

    /// The culprit of per-rank blocked waits (µs), nil when no rank made another wait.
    public static func find(blockedWaitMicros w: [Double]) -> Culprit? {
        guard let worst = w.indices.max(by: { w[$0] < w[$1] || (w[$0] == w[$1] && $0 > $1) }), w[worst] > 0 else { return nil }
        let tied = w.indices.filter { $0 != worst && w[$0] == w[worst] }
        let median = Self.median(w)
        let spread = 1.4826 * Self.median(w.map { abs($0 - median) })
        let lead = w[worst] - median
        let score = spread > 0 ? lead / spread : (lead > 0 ? .infinity : 0)
        let threshold = w.count >= minimumRanksForTest ? (2 * log(Double(w.count))).squareRoot() + 1 : nil
        return Culprit(rank: worst, tiedWith: tied, ranks: w.count, waitMicros: w[worst], medianMicros: median, spreadMicros: spread, score: score, threshold: threshold)
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// One line for a report.
    public var sentence: String {
        let wait = String(format: "%.3f", waitMicros)
        if !tiedWith.isEmpty {
            return "no single culprit: ranks \(([rank] + tiedWith).sorted().map(String.init).joined(separator: ", ")) made the others wait the same, \(wait) us each"
        }
        guard let threshold else {
            return "culprit: rank \(rank), which the others waited for \(wait) us (RECV wait summed over receivers)"
        }
        let stats =
            spreadMicros > 0
            ? String(format: "median %.3f us, robust spread %.3f us, %.1f spreads above the median", medianMicros, spreadMicros, score)
            : String(format: "median %.3f us, no spread: most ranks caused the same wait", medianMicros)
        // The bar the score is tested against, not the noise level under it: printing
        // sqrt(2 ln n) alone read as "3.2 spreads ... within noise (about 3.1)".
        let bar = String(format: "%.1f", threshold)
        if standsOut {
            return "culprit: rank \(rank), which the others waited for \(wait) us (\(stats); named above \(bar), what noise among \(ranks) ranks stays under)"
        }
        return "no single culprit: the most waited-for rank, \(rank) (\(wait) us; \(stats)), is within what noise among \(ranks) ranks gives (named above \(bar))"
    }
}
