import Foundation
import Testing

@Suite("epsim calibrate with measurements")
struct CalibrateCommandTests {
    static let sitting = "calibration/measurements/2026-11-29-h200x2-a"

    @Test("a measurement CSV is compared, fit and held-out rows apart; the fitted block pastes into a scenario that validates")
    func fitPrintsAPastableBlock() throws {
        let out = try CLI.run(["calibrate", "--measurements", "\(Self.sitting)/ll.csv", "--fit", "--preset", "h200"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("114 measured rows in 57 cases"))
        #expect(out.stdout.contains("     fit       dispatch") && out.stdout.contains("held out       dispatch"))
        let tail = try #require(out.stdout.range(of: "hardware:\n").map { out.stdout[$0.lowerBound...] })
        // The block: its first line and the indented ones after it (a note may follow).
        let lines = tail.split(separator: "\n")
        let block = ([lines[0]] + lines.dropFirst().prefix { $0.hasPrefix("  ") }).joined(separator: "\n") + "\n"
        #expect(block.contains("  dispatch_send_fixed_us: ") && block.contains("  launch_gap_us: "))
        let scenario = try CLI.temporaryFile("cluster: {ranks: 2, gpus_per_node: 2}\n" + block)
        let validated = try CLI.run(["validate", scenario])
        #expect(validated.status == 0, "\(validated.stderr)")
    }

    @Test("a DeepEP log is read with the sizes the user gives")
    func readsLog() throws {
        let out = try CLI.run(["calibrate", "--measurements", "\(Self.sitting)/deepep-test-t128.log", "--log-experts", "256", "--rows"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("4 measured rows in 2 cases") && out.stdout.contains("deepep-test-fused"))
    }

    @Test("bad measurement files exit 65 with file and line; bad arguments exit 64")
    func errors() throws {
        let bad = try CLI.temporaryFile("[rank 0] Dispatch bandwidth: 1 GB/s, avg_t=x us | Combine bandwidth: 1 GB/s, avg_t=2 us\n", name: "bad.log")
        let out = try CLI.run(["calibrate", "--measurements", bad])
        #expect(out.status == 65 && out.stderr.contains("bad.log:1:"), "\(out.stderr)")
        let missing = try CLI.run(["calibrate", "--measurements", "/nonexistent/ll.csv"])
        #expect(missing.status == 65 && missing.stderr.contains("/nonexistent/ll.csv"))
        for args in [["--fit-on", ","], ["--preset", "a100"], ["--log-tokens", "-1"], ["--log-hidden", "100"]] {
            let r = try CLI.run(["calibrate", "--measurements", "\(Self.sitting)/ll.csv"] + args)
            #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
        }
        let noRow = try CLI.run(["calibrate", "--measurements", "\(Self.sitting)/ll.csv", "--fit", "--fit-on", "nothing-like-this"])
        #expect(noRow.status == 64 && noRow.stderr.contains("no measured row matches"))
    }
}
