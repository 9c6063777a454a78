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
    /// A value beyond the representable range (or not finite) saturates to ``max`` (or its
    /// negative), which the engine reports as passing its ``horizon``: never a trap.
    ///
    /// Every user-facing duration enters the engine through this rounding.
    @inlinable public init(micros: Double) {
        self = SimTime.saturating(picos: (micros * 1_000_000).rounded(.toNearestOrAwayFromZero))
    }

    /// `picos` (a whole number, as a `Double`) as a time, saturated to ``max`` when it does
    /// not fit (NaN gives ``max``).
    @inlinable public static func saturating(picos: Double) -> SimTime {
        if picos >= 9.2e18 || picos.isNaN { return .max }
        if picos <= -9.2e18 { return SimTime(picos: -Int64.max) }
        return SimTime(picos: Int64(picos))
    }

    public static let zero = SimTime(picos: 0)
    /// The largest time; sums saturate here instead of overflowing.
    public static let max = SimTime(picos: .max)
    /// Simulated time a run may reach: 2^62 ps, about 53 days. Every sum the engine forms of
    /// two times below it fits, so a run that passes it stops with a clean error instead of
    /// overflowing.
    public static let horizon = SimTime(picos: 1 << 62)

    /// `self` times `count`, saturated to ``max``.
    @inlinable public func times(_ count: Int64) -> SimTime {
        let (r, o) = rawValue.multipliedReportingOverflow(by: count)
        return o ? (rawValue < 0) != (count < 0) ? SimTime(picos: -Int64.max) : .max : SimTime(picos: r)
    }

    /// The time in microseconds, for printing and storing.
    @inlinable public var micros: Double { Double(rawValue) / 1_000_000 }

    /// Picoseconds (the raw representation).
    @inlinable public var picos: Int64 { rawValue }

    @inlinable public static func < (lhs: SimTime, rhs: SimTime) -> Bool { lhs.rawValue < rhs.rawValue }
    /// Saturating: a sum beyond ``max`` is ``max`` (never a trap; see ``horizon``).
    @inlinable public static func + (lhs: SimTime, rhs: SimTime) -> SimTime {
        let (r, o) = lhs.rawValue.addingReportingOverflow(rhs.rawValue)
        return o ? (rhs.rawValue > 0 ? .max : SimTime(picos: -Int64.max)) : SimTime(picos: r)
    }
    /// Saturating, as ``+(_:_:)``.
    @inlinable public static func - (lhs: SimTime, rhs: SimTime) -> SimTime {
        let (r, o) = lhs.rawValue.subtractingReportingOverflow(rhs.rawValue)
        return o ? (rhs.rawValue < 0 ? .max : SimTime(picos: -Int64.max)) : SimTime(picos: r)
    }
    @inlinable public static func += (lhs: inout SimTime, rhs: SimTime) { lhs = lhs + rhs }

    public var description: String { "\(micros) us" }

    /// The time to push `bytes` through a link of `gigabytesPerSecond` (10^9 bytes/s),
    /// **rounded up** to a whole picosecond.
    ///
    /// This is the single rounding rule for every transfer and copy time in EPSim: a closed
    /// form that uses the same function matches the engine exactly. Rounding up keeps the
    /// contract's bound "a message cannot finish before latency + bytes / bandwidth".
    ///
    /// The bandwidth is read as the decimal number it was written as (33.3 is 333/10, not the
    /// binary fraction nearest to it) and the ceiling is taken in integers, so a transfer
    /// whose exact time is a whole number of picoseconds is that number: 3996 bytes at
    /// 33.3 GB/s take 120000 ps (a `Double` ceiling gave 120001). A bandwidth with no exact
    /// decimal of up to 12 fraction digits, or an integer product beyond 128 bits, falls back
    /// to the `Double` ceiling; an infinite bandwidth takes no time.
    ///
    /// Every flow of a run computes one, so the ceiling is first taken from the `Double`
    /// quotient whenever that quotient is clearly not near a whole number (the usual case),
    /// which gives the exact answer without finding the decimal (``transferExact``): see the
    /// bound below.
    ///
    /// - Precondition: `gigabytesPerSecond > 0`, `bytes >= 0`.
    @inlinable public static func transfer(bytes: Int64, gigabytesPerSecond: Double) -> SimTime {
        if gigabytesPerSecond.isInfinite || bytes == 0 { return .zero }
        // Why the fast path is exact. With the decimal N / 10^k that ``decimalFraction(_:)``
        // accepts for the rate x, |x 10^k - N| <= x 10^k (1e-12 + 2^-53), so the exact time
        // q = bytes 1000 10^k / N and the computed d = fl(fl(bytes 1000) / x) (three
        // roundings of 2^-53) differ by under 1.001e-12 d. When d is more than 4e-12 d + 1e-9
        // from every whole number, no whole number lies between d and q: ceil(q) = ceil(d) =
        // trunc(d) + 1, which is also what the `Double` fallback gives (no decimal, or a
        // product beyond 128 bits). Below 4e15, trunc and the fraction are exact in a Double.
        if bytes > 0 {
            let estimate = Double(bytes) * 1000 / gigabytesPerSecond
            if estimate < 4e15 {
                let whole = Int64(estimate)
                let fraction = estimate - Double(whole)
                let margin = estimate * 4e-12 + 1e-9
                if fraction > margin && fraction < 1 - margin { return SimTime(picos: whole + 1) }
            }
        }
        return transferExact(bytes: bytes, gigabytesPerSecond: gigabytesPerSecond)
    }

    /// ``transfer(bytes:gigabytesPerSecond:)`` always through the decimal of the rate (and
    /// the `Double` fallback): what the fast path must equal (the tests compare them).
    @usableFromInline static func transferExact(bytes: Int64, gigabytesPerSecond: Double) -> SimTime {
        if gigabytesPerSecond.isInfinite || bytes == 0 { return .zero }
        if let (numerator, denominator) = decimalFraction(gigabytesPerSecond), bytes >= 0 {
            // ps = ceil(bytes * 1000 * denominator / numerator), in 128 bits.
            let (high, low) = bytes.multipliedFullWidth(by: 1000 * denominator)
            // A quotient beyond Int64 (over 106 days) takes the saturating fallback below
            // (it trapped before).
            if high == 0 {
                // The product fits in 64 bits (every realistic transfer: bytes x 1000 x 10^k < 2^64):
                // one machine division gives the same quotient and remainder as the 128-bit
                // routine below, which is a library call costing several times more.
                let (q, r) = low.quotientAndRemainder(dividingBy: UInt64(numerator))
                let up = r == 0 ? q : q + 1
                if up <= UInt64(Int64.max) { return SimTime(picos: Int64(up)) }
            } else if high < numerator {
                let (q, r) = UInt64(numerator).dividingFullWidth((UInt64(high), low))
                let up = r == 0 ? q : q + 1
                if up <= UInt64(Int64.max) { return SimTime(picos: Int64(up)) }
            }
        }
        // bytes / (GB/s * 1e9) seconds = bytes * 1000 / GBps picoseconds.
        return SimTime.saturating(picos: (Double(bytes) * 1000 / gigabytesPerSecond).rounded(.up))
    }

    /// `x` as `numerator / 10^k` for the smallest `k` in 0...12 at which `x * 10^k` is a
    /// whole number to within 1e-9 of itself (the decimal `x` was written as); nil when none
    /// is, or the numerator does not fit.
    ///
    /// Called for every transfer (every flow of a run): the nearest whole number is taken
    /// without a libm call (see the loop), the same value `scaled.rounded()` gives.
    @usableFromInline static func decimalFraction(_ x: Double) -> (Int64, Int64)? {
        guard x.isFinite, x > 0 else { return nil }
        var scale: Int64 = 1
        for _ in 0...12 {
            let scaled = x * Double(scale)
            guard scaled < 9e18 else { return nil }
            // Round half away from zero, exactly: for 0 < scaled < 2^63 the truncation fits an
            // Int64 and the fraction `scaled - truncated` is exact in a Double (above 2^52
            // every Double is whole and the fraction is 0).
            let truncated = Int64(scaled)
            let whole = scaled - Double(truncated) >= 0.5 ? truncated + 1 : truncated
            if whole >= 1, abs(scaled - Double(whole)) <= scaled * 1e-12 { return (whole, scale) }
            scale *= 10
        }
        return nil
    }
}
