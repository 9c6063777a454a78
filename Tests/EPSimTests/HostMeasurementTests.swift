import Foundation
import Testing

@testable import EPSim

/// ``HostDefaults`` against the stored host measurement they come from.
@Suite("Host defaults from the stored measurement")
struct HostMeasurementTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("calibration/measurements/2026-12-07-h100-host").path

    @Test("the defaults are the measurement's medians (to 0.1 us) and the wake-up grows with idle time")
    func defaultsAreMedians() throws {
        let m = try HostMeasurements(path: Self.folder + "/host.csv")
        #expect(m.trials.count == 380)
        let eager = try #require(m.eagerLaunchMicros)
        let graph = try #require(m.graphLaunchMicros(kernels: 512))
        #expect(abs(eager - HostDefaults.eagerLaunchMicros) < 0.05, "eager \(eager)")
        #expect(abs(graph - HostDefaults.graphLaunchMicros) < 0.05, "graph \(graph)")
        // A replay costs the host far less than launching its 512 kernels one by one.
        #expect(graph < 512 * eager / 100)
        let wake = try [1, 10, 100].map { try #require(m.wakeMicros(idleMs: $0)) }
        #expect(wake[0] < 20 && wake[1] > 100 && wake[2] > wake[1], "\(wake)")
        // The threshold sits between the idle times that cost little and those that cost much.
        #expect(HostDefaults.wakeAfterIdleMicros > 1000 && HostDefaults.wakeAfterIdleMicros <= 10_000)
    }

    @Test("a malformed host.csv is refused naming the line and column")
    func malformed() {
        let header = "case,kernels,idle_ms,trial,host_us,gpu_us,done_us\n"
        for (body, fragment) in [
            ("eager-sub,256,0,0,1,1,1\n", "column case"), ("eager-add,x,0,0,1,1,1\n", "column kernels"),
            ("eager-add,256,0,0,-1,1,1\n", "column host_us"), ("eager-add,256,0,0,1,1\n", "expected 7 cells"),
        ] {
            do {
                _ = try HostMeasurements(csv: header + body, file: "host.csv")
                Issue.record("accepted \(body)")
            } catch {
                #expect("\(error)".contains(fragment) && "\(error)".contains("host.csv:2"), "\(error)")
            }
        }
    }
}
