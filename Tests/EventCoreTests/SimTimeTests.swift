import Testing

@testable import EventCore

@Suite("Simulated time never overflows")
struct SimTimeSaturationTests {
    @Test("sums, differences and products saturate at max instead of trapping")
    func saturation() {
        let big = SimTime(picos: .max - 5)
        #expect(big + SimTime(picos: 10) == .max)
        #expect(SimTime(picos: -Int64.max) - SimTime(picos: 10) == SimTime(picos: -Int64.max))
        #expect(SimTime(picos: 3) + SimTime(picos: 4) == SimTime(picos: 7), "exact below the limit")
        #expect(SimTime(picos: 1 << 40).times(1 << 30) == .max)
        #expect(SimTime(picos: 1 << 40).times(-(1 << 30)) == SimTime(picos: -Int64.max))
        #expect(SimTime(picos: 12).times(11) == SimTime(picos: 132))
        var t = SimTime.max
        t += SimTime(picos: 1)
        #expect(t == .max)
    }

    @Test("conversions from microseconds and transfers saturate")
    func conversions() {
        #expect(SimTime(micros: 1e15) == .max)
        #expect(SimTime(micros: .infinity) == .max && SimTime(micros: .nan) == .max)
        #expect(SimTime(micros: -1e300) == SimTime(picos: -Int64.max))
        #expect(SimTime(micros: 1e9) == SimTime(picos: 1_000_000_000_000_000))
        #expect(SimTime.transfer(bytes: .max, gigabytesPerSecond: 1e-6) == .max)
        #expect(SimTime.horizon < .max && SimTime.horizon + SimTime.horizon > SimTime.horizon, "two times below the horizon add exactly")
    }
}

@Suite("Transfers round up exactly")
struct TransferTests {
    @Test("a whole number of picoseconds is that number; anything above rounds up one")
    func exactCeiling() {
        #expect(SimTime.transfer(bytes: 3996, gigabytesPerSecond: 33.3) == SimTime(picos: 120_000))
        #expect(SimTime.transfer(bytes: 3997, gigabytesPerSecond: 33.3) == SimTime(picos: 120_031), "3997000/33.3 = 120030.03")
        #expect(SimTime.transfer(bytes: 7168, gigabytesPerSecond: 160) == SimTime(picos: 44_800))
        #expect(SimTime.transfer(bytes: 1, gigabytesPerSecond: 3) == SimTime(picos: 334))
        #expect(SimTime.transfer(bytes: 0, gigabytesPerSecond: 0.001) == .zero)
        #expect(SimTime.transfer(bytes: 123_456, gigabytesPerSecond: .infinity) == .zero)
        // Against exact rational arithmetic on random decimal bandwidths.
        var state: UInt64 = 12345
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        for _ in 0..<2000 {
            let tenths = Int64(1 + next() % 50_000)  // 0.1 ... 5000.0 GB/s
            let bytes = Int64(next() % 50_000_000)
            let exact = (bytes * 1000 * 10 + tenths - 1) / tenths
            #expect(SimTime.transfer(bytes: bytes, gigabytesPerSecond: Double(tenths) / 10) == SimTime(picos: exact))
        }
    }

    @Test("the Double fast path gives what the exact decimal path gives")
    func fastPathMatchesExact() {
        var state: UInt64 = 987_654_321
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        // Rates with 0 to 6 decimals, a few with no short decimal, and byte counts from one
        // byte to terabytes, including exact multiples (whole picoseconds, where the fast
        // path must step aside).
        let rates: [Double] = [44.1, 33.3, 160, 50, 3, 0.1, 46.67, 153.7, 1730, 3700, 6120, 12.345678, 1.0 / 3, .pi, 0.001, 5000.5]
        for rate in rates {
            for _ in 0..<3000 {
                let magnitude = next() % 13
                var bytes = Int64(next() % 1000 + 1)
                for _ in 0..<magnitude { bytes = bytes * 10 + Int64(next() % 10) }
                #expect(SimTime.transfer(bytes: bytes, gigabytesPerSecond: rate) == SimTime.transferExact(bytes: bytes, gigabytesPerSecond: rate))
                // A multiple of the rate's numerator: a whole number of picoseconds.
                let multiple = Int64(rate * 1000).multipliedReportingOverflow(by: Int64(next() % 100_000 + 1)).partialValue
                if multiple > 0 {
                    #expect(SimTime.transfer(bytes: multiple, gigabytesPerSecond: rate) == SimTime.transferExact(bytes: multiple, gigabytesPerSecond: rate))
                }
            }
        }
    }
}
