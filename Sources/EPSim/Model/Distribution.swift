import Foundation

/// A seeded distribution of per-rank integers (token counts, KV lengths).
///
/// Draws are rounded to the nearest integer and clamped to the allowed range, and come
/// from a generator seeded by (seed, purpose, step, rank), so they do not depend on the
/// order in which ranks are evaluated.
public enum Distribution: Sendable, Equatable {
    case constant(Double)
    case list([Int])
    /// Uniform on `[min, max]` (integers, both ends included).
    case uniform(min: Int, max: Int)
    case normal(mean: Double, stddev: Double)
    /// `exp(N(mu, sigma))`.
    case lognormal(mu: Double, sigma: Double)
    /// `P(k) ∝ k^-exponent` for `k = 1 ... max`.
    case zipf(exponent: Double, max: Int)

    /// The draw for `rank` (step and purpose mixed into the seed), clamped to `range`.
    public func draw(rank: Int, step: Int, seed: UInt64, purpose: UInt64, range: ClosedRange<Int>) -> Int {
        var g = SplitMix64(seed: SplitMix64.mix(seed, purpose, UInt64(step), UInt64(rank)))
        let x: Double
        switch self {
        case .constant(let v): x = v
        case .list(let values): return min(max(values[rank], range.lowerBound), range.upperBound)
        case let .uniform(lo, hi): x = Double(lo + g.next(below: hi - lo + 1))
        case let .normal(mean, sd): x = mean + sd * Self.gaussian(&g)
        case let .lognormal(mu, sigma): x = exp(mu + sigma * Self.gaussian(&g))
        case let .zipf(s, n):
            // Inverse transform on the normalised cumulative weights.
            var total = 0.0
            for k in 1...n { total += pow(Double(k), -s) }
            var u = Self.unit(&g) * total
            var k = 1
            while k < n {
                u -= pow(Double(k), -s)
                if u <= 0 { break }
                k += 1
            }
            x = Double(k)
        }
        guard x.isFinite else { return range.upperBound }
        return Int(min(max(x.rounded(), Double(range.lowerBound)), Double(range.upperBound)))
    }

    static func unit(_ g: inout SplitMix64) -> Double { Double(g.next() >> 11) / Double(1 << 53) }

    /// Box-Muller.
    static func gaussian(_ g: inout SplitMix64) -> Double {
        let u1 = max(unit(&g), 1e-300)
        let u2 = unit(&g)
        return sqrt(-2 * log(u1)) * cos(2 * .pi * u2)
    }
}
