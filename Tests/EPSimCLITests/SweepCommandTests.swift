import Foundation
import Testing

@Suite("epsim sweep and db merge, end to end")
struct SweepCommandTests {
    static func freshDatabase(_ name: String = "runs.sqlite") throws -> String {
        URL(fileURLWithPath: try CLI.temporaryFile("", name: "x")).deletingLastPathComponent().appendingPathComponent(name).path
    }

    @Test("a sweep stores one run per point; shards merge into the whole")
    func shardsAndMerge() throws {
        let vary = ["--vary", "costs.attn1_us=10,20,30,40,50,60,70", "--vary", "schedule=none,deepseek-decode"]
        let whole = try Self.freshDatabase()
        let all = try CLI.run(["sweep", "Scenarios/batch-imbalance.yaml"] + vary + ["--db", whole, "--format", "csv"])
        #expect(all.status == 0, "\(all.stderr)")
        let allRows = all.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",").map(String.init) }
        #expect(allRows.count == 14)
        var merged: [String] = []
        let target = try Self.freshDatabase("merged.sqlite")
        for i in 0..<3 {
            let db = try Self.freshDatabase("shard\(i).sqlite")
            let out = try CLI.run(["sweep", "Scenarios/batch-imbalance.yaml"] + vary + ["--shard", "\(i)/3", "--db", db, "--format", "csv", "--jobs", "1"])
            #expect(out.status == 0)
            merged += out.stdout.split(separator: "\n").dropFirst().map(String.init)
            let m = try CLI.run(["db", "merge", target, db])
            #expect(m.status == 0, "\(m.stderr)")
        }
        // The shards' rows (point index and results, run ids aside) are the whole sweep's.
        let strip = { (row: String) in row.split(separator: ",").dropLast().joined(separator: ",") }
        #expect(Set(merged.map(strip)) == Set(allRows.map { $0.dropLast().joined(separator: ",") }))
        #expect(merged.count == 14)
        let list = try CLI.run(["runs", "list", "--db", target])
        #expect(list.stdout.split(separator: "\n").count == 15)
        let latencies = { (text: String) in
            text.split(separator: "\n").dropFirst().compactMap { $0.split(separator: " ").dropLast().last.map(String.init) }.sorted()
        }
        #expect(latencies(list.stdout) == latencies(try CLI.run(["runs", "list", "--db", whole]).stdout))

        // Sources that cannot be merged: exit 74 naming the file, nothing copied.
        let garbage = try CLI.temporaryFile("not a database\n", name: "garbage.sqlite")
        for bad in [garbage, target] {
            let m = try CLI.run(["db", "merge", target, bad])
            #expect(m.status == 74 && m.stderr.contains(bad), "\(m.stderr)")
        }
        #expect(try CLI.run(["runs", "list", "--db", target]).stdout.split(separator: "\n").count == 15)
    }

    @Test(
        "SIGINT (Ctrl-C) and SIGTERM (Slurm, Kubernetes) stop a sweep cleanly: exit 128 + signal, completed points printed and stored",
        arguments: [(SIGINT, Int32(130), "interrupted: "), (SIGTERM, Int32(143), "terminated (SIGTERM): ")])
    func stopped(_ signal: Int32, _ status: Int32, _ message: String) throws {
        let db = try Self.freshDatabase()
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = [
            "sweep", "Scenarios/batch-imbalance-ep16.yaml", "--vary", "workload.seed=" + (1...4000).map(String.init).joined(separator: ","),
            "--vary", "workload.routing=uniform", "--db", db, "--format", "csv", "--jobs", "2",
        ]
        process.currentDirectoryURL = CLI.repoRoot
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Wait until some points are stored, then send the signal.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            let list = try CLI.run(["runs", "list", "--db", db])
            if list.stdout.split(separator: "\n").count > 3 { break }
        }
        kill(process.processIdentifier, signal)
        let printed = out.fileHandleForReading.readDataToEndOfFile()
        let messages = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == status, "\(messages.suffix(500))")
        let rows = String(decoding: printed, as: UTF8.self).split(separator: "\n").dropFirst().map { $0.split(separator: ",").map(String.init) }
        #expect(rows.count > 0 && rows.count < 4000)
        #expect(messages.contains(message + "\(rows.count) of 4000 points completed and stored"), "\(messages.suffix(500))")
        // The database holds exactly the printed rows: same run ids, nothing half-written.
        let stored = try CLI.run(["runs", "list", "--db", db]).stdout.split(separator: "\n").dropFirst().compactMap {
            $0.split(separator: " ").first.map(String.init)
        }
        #expect(Set(stored) == Set(rows.compactMap(\.last)) && stored.count == rows.count, "every completed point is stored")
    }

    static let invalidSweep = [
        "sweep", "Scenarios/balanced.yaml", "--vary", "workload.tokens_per_rank=4,-2,8", "--vary", "cluster.ranks=2,3", "--format", "csv",
    ]

    @Test("one invalid point refuses the sweep, named by its index and overrides, not by the override's text position")
    func invalidPoint() throws {
        let db = try Self.freshDatabase()
        let out = try CLI.run(Self.invalidSweep + ["--db", db])
        #expect(out.status == 65)
        // Point 1 (ranks 3) is the lowest invalid one; its error is at model.experts in the file.
        #expect(
            out.stderr.contains(
                "error: Scenarios/balanced.yaml:9:12: point 1 (workload.tokens_per_rank=4 cluster.ranks=3): model.experts: model.experts (16) must be divisible by cluster.ranks (3)"
            ), "\(out.stderr)")
        #expect(out.stderr.contains("--skip-invalid"))
        #expect(out.stdout.isEmpty && !FileManager.default.fileExists(atPath: db))
        let value = try CLI.run(["sweep", "Scenarios/balanced.yaml", "--vary", "workload.tokens_per_rank=4,-2", "--no-store"])
        #expect(
            value.stderr.contains(
                "error: Scenarios/balanced.yaml: point 1 (workload.tokens_per_rank=-2): workload.tokens_per_rank: expected a non-negative number of tokens in 0...1048576, found -2"
            ),
            "\(value.stderr)")
        #expect(!value.stderr.contains("]:1:1"))
    }

    @Test("--skip-invalid runs the valid points, stores them, and lists the others on standard error")
    func skipInvalid() throws {
        let db = try Self.freshDatabase()
        let out = try CLI.run(Self.invalidSweep + ["--db", db, "--skip-invalid"])
        #expect(out.status == 0, "\(out.stderr)")
        let rows = out.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",").map(String.init) }
        #expect(rows.map { $0[0] } == ["0", "4"], "the valid points, by their index in the whole sweep")
        for index in [1, 2, 3, 5] { #expect(out.stderr.contains("skipped: Scenarios/balanced.yaml") && out.stderr.contains("point \(index) (")) }
        #expect(out.stderr.contains("point 2 (workload.tokens_per_rank=-2 cluster.ranks=2): workload.tokens_per_rank: expected"))
        #expect(out.stderr.contains("skipped 4 invalid points of 6: 1, 2, 3, 5"))
        #expect(try CLI.run(["runs", "list", "--db", db]).stdout.split(separator: "\n").count == 3)
        // No valid point at all: nothing to run, exit 65.
        let none = try CLI.run(["sweep", "Scenarios/balanced.yaml", "--vary", "cluster.ranks=3,5", "--skip-invalid", "--no-store"])
        #expect(none.status == 65 && none.stderr.contains("error: no valid point among the 2 points of this sweep"), "\(none.stderr)")
        // A shard with no point at all is not an invalid one.
        let empty = try CLI.run(["sweep", "Scenarios/balanced.yaml", "--vary", "steps=1", "--shard", "1/2", "--skip-invalid", "--no-store"])
        #expect(empty.status == 0 && !empty.stderr.contains("error"), "\(empty.stderr)")
    }

    @Test("a point run would refuse (past the time bound) is refused before any point runs, or skipped with --skip-invalid")
    func pointOverTimeBound() throws {
        let sweep = ["sweep", "Scenarios/balanced.yaml", "--vary", "costs.gemm_us=50,1000000000", "--vary", "steps=1,5000", "--no-store", "--format", "csv"]
        let refused = try CLI.run(sweep)
        #expect(refused.status == 70 && refused.stdout.isEmpty, "\(refused.stderr)")
        #expect(refused.stderr.contains("point 3 (costs.gemm_us=1000000000 steps=5000): time-overflow"), "\(refused.stderr)")
        let skipped = try CLI.run(sweep + ["--skip-invalid"])
        #expect(skipped.status == 0, "\(skipped.stderr)")
        #expect(skipped.stdout.split(separator: "\n").dropFirst().map { String($0.split(separator: ",")[0]) } == ["0", "1", "2"])
        #expect(skipped.stderr.contains("skipped 1 invalid point of 4: 3"))
    }
}
