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
