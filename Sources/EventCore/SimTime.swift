/// A point or span of simulated time, held as a whole number of picoseconds.
///
/// Integer picoseconds keep every result exactly reproducible: sums never drift and two runs
/// of one scenario give bit-identical timelines. An `Int64` of picoseconds spans about
/// 106 days of simulated time, far beyond any step.
///
/// ```swift
/// let t = SimTime(micros: 12.5)   // 12_500_000 ps
/// t.micros                        // 12.5
/// ```
public struct SimTime: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Picoseconds since the start of the run (or the length of a span).
    public var rawValue: Int64

    @inlinable public init(rawValue: Int64) { self.rawValue = rawValue }

    /// A time of `picos` picoseconds.
    @inlinable public init(picos: Int64) { self.rawValue = picos }

    /// A time given in microseconds, rounded to the nearest picosecond (ties away from zero).
    ///
    /// Every user-facing duration enters the engine through this rounding.
    @inlinable public init(micros: Double) {
        self.rawValue = Int64((micros * 1_000_000).rounded(.toNearestOrAwayFromZero))
    }

    public static let zero = SimTime(picos: 0)

    /// The time in microseconds, for printing and storing.
    @inlinable public var micros: Double { Double(rawValue) / 1_000_000 }

    /// Picoseconds (the raw representation).
    @inlinable public var picos: Int64 { rawValue }

    @inlinable public static func < (lhs: SimTime, rhs: SimTime) -> Bool { lhs.rawValue < rhs.rawValue }
    @inlinable public static func + (lhs: SimTime, rhs: SimTime) -> SimTime { SimTime(picos: lhs.rawValue + rhs.rawValue) }
    @inlinable public static func - (lhs: SimTime, rhs: SimTime) -> SimTime { SimTime(picos: lhs.rawValue - rhs.rawValue) }
    @inlinable public static func += (lhs: inout SimTime, rhs: SimTime) { lhs.rawValue += rhs.rawValue }

    public var description: String { "\(micros) us" }

    /// The time to push `bytes` through a link of `gigabytesPerSecond` (10^9 bytes/s),
    /// **rounded up** to a whole picosecond.
    ///
    /// This is the single rounding rule for every transfer and copy time in EPSim: a closed
    /// form that uses the same function matches the engine exactly. Rounding up keeps the
    /// contract's bound "a message cannot finish before latency + bytes / bandwidth".
    ///
    /// - Precondition: `gigabytesPerSecond > 0`, `bytes >= 0`.
    @inlinable public static func transfer(bytes: Int64, gigabytesPerSecond: Double) -> SimTime {
        // bytes / (GB/s * 1e9) seconds = bytes * 1000 / GBps picoseconds.
        SimTime(picos: Int64((Double(bytes) * 1000 / gigabytesPerSecond).rounded(.up)))
    }
}
