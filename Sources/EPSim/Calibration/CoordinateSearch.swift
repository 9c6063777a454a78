import Foundation

/// The deterministic coordinate search every fit uses (`epsim calibrate --fit`).
///
/// Each round tries every parameter at `x * s^j`, `j` in -3...3 (clamped to its range; 1 in
/// place of 0), keeps the best, and moves on to the next parameter; `s` starts at 4 and is
/// square-rooted every round, so a pass goes from factors of 64 to under 1%. A second pass
/// does it all again from the first pass's result, so that parameters pushed aside while the
/// others were still far off get another wide search. No randomness: the same inputs give
/// the same result.
public enum CoordinateSearch {
    /// The value minimising `score`, starting from `start`.
    public static func minimize<T>(
        _ start: T, parameters: [(field: WritableKeyPath<T, Double>, range: ClosedRange<Double>)], rounds: Int = 10, passes: Int = 2,
        score: (T) throws -> Double
    ) rethrows -> T {
        var best = start
        var bestScore = try score(best)
        for _ in 0..<passes {
            for round in 0..<rounds {
                let step = pow(4.0, pow(0.5, Double(round)))
                for p in parameters {
                    let x = best[keyPath: p.field]
                    var roundBest = best
                    for j in [-3.0, -2, -1, 1, 2, 3] {
                        var candidate = best
                        candidate[keyPath: p.field] = min(max((x == 0 ? 1 : x) * pow(step, j), p.range.lowerBound), p.range.upperBound)
                        guard candidate[keyPath: p.field] != x else { continue }
                        let s = try score(candidate)
                        if s < bestScore {
                            roundBest = candidate
                            bestScore = s
                        }
                    }
                    best = roundBest
                }
            }
        }
        return best
    }
}
