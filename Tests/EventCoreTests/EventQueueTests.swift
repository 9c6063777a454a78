import EventCore
import Testing

@Suite("EventQueue")
struct EventQueueTests {
    @Test("pops in time order, equal times first-in first-out")
    func ordering() {
        var q = EventQueue<Int>()
        var g: UInt64 = 12345
        var expected: [(Int64, Int)] = []
        for i in 0..<2000 {
            g = g &* 6364136223846793005 &+ 1442695040888963407
            let t = Int64((g >> 33) % 50)  // many ties
            q.push(i, at: SimTime(picos: t))
            expected.append((t, i))
        }
        // Stable sort by time keeps insertion order among ties: that is the contract.
        let sorted = expected.enumerated().sorted { a, b in
            a.element.0 != b.element.0 ? a.element.0 < b.element.0 : a.offset < b.offset
        }.map(\.element.1)
        var popped: [Int] = []
        while let e = q.pop() { popped.append(e.payload) }
        #expect(popped == sorted)
        #expect(q.isEmpty)
    }

    @Test("interleaved push and pop never go back in time")
    func holdPattern() {
        var q = EventQueue<Int>()
        for i in 0..<64 { q.push(i, at: SimTime(picos: Int64(i * 7 % 13))) }
        var now: Int64 = 0
        var g: UInt64 = 99
        for _ in 0..<10_000 {
            let e = q.pop()!
            #expect(e.time.picos >= now)
            now = e.time.picos
            g = g &* 6364136223846793005 &+ 1
            q.push(e.payload, at: SimTime(picos: now + Int64(g >> 54)))
        }
        #expect(q.count == 64)
    }
}

@Suite("SimTime")
struct SimTimeTests {
    @Test("microseconds round to the nearest picosecond")
    func micros() {
        #expect(SimTime(micros: 12.5).picos == 12_500_000)
        #expect(SimTime(micros: 0.0000004).picos == 0)
        #expect(SimTime(micros: 0.0000005).picos == 1)
        #expect(SimTime(micros: 1.25).micros == 1.25)
    }

    @Test("transfer time is bytes*1000/GBps picoseconds, rounded up")
    func transfer() {
        // 7408 B at 50 GB/s = 148.16 ns = 148160 ps exactly.
        #expect(SimTime.transfer(bytes: 7408, gigabytesPerSecond: 50).picos == 148_160)
        // 1 B at 3 GB/s = 333.33 ps -> 334.
        #expect(SimTime.transfer(bytes: 1, gigabytesPerSecond: 3).picos == 334)
        #expect(SimTime.transfer(bytes: 0, gigabytesPerSecond: 3).picos == 0)
    }
}
