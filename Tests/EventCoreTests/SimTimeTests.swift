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
}
