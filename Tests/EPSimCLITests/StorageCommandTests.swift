import Foundation
import Testing

@Suite("Storage commands, end to end")
struct StorageCommandTests {
    static func freshDatabase() throws -> String {
        URL(fileURLWithPath: try CLI.temporaryFile("", name: "x")).deletingLastPathComponent().appendingPathComponent("runs.sqlite").path
    }

    @Test("the three seed scenarios are stored, listed, compared by id and exported")
    func seedScenarios() throws {
        let db = try Self.freshDatabase()
        for name in ["balanced", "batch-imbalance", "attention-imbalance"] {
            let out = try CLI.run(["run", "Scenarios/\(name).yaml", "--db", db])
            #expect(out.status == 0, "\(out.stderr)")
        }
        let list = try CLI.run(["runs", "list", "--db", db])
        let ids = list.stdout.split(separator: "\n").dropFirst().compactMap { Int($0.split(separator: " ").first ?? "") }
        #expect(ids == [3, 2, 1])
        #expect(list.stdout.contains("attention-imbalance"))
        let filtered = try CLI.run(["runs", "list", "--db", db, "--scenario", "balanced"])
        #expect(filtered.stdout.split(separator: "\n").count == 2)

        let compare = try CLI.run(["compare", "1", "2", "3", "--db", db])
        #expect(compare.status == 0)
        #expect(compare.stdout.contains("run 2: batch-imbalance [none]"))
        #expect(compare.stdout.contains("311.451 (-17.162 -5.2%)"))

        let show = try CLI.run(["runs", "show", "2", "--db", db])
        #expect(show.stdout.contains("scenario batch-imbalance (Scenarios/batch-imbalance.yaml"))

        let dir = URL(fileURLWithPath: db).deletingLastPathComponent()
        let csv1 = dir.appendingPathComponent("a.csv").path
        let csv2 = dir.appendingPathComponent("b.csv").path
        let trace = dir.appendingPathComponent("t.json").path
        #expect(try CLI.run(["export", "2", "--csv", csv1, "--trace", trace, "--db", db]).status == 0)
        #expect(try CLI.run(["export", "2", "--csv", csv2, "--db", db]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: csv1)) == Data(contentsOf: URL(fileURLWithPath: csv2)))
        let direct = dir.appendingPathComponent("direct.csv").path
        #expect(try CLI.run(["run", "Scenarios/batch-imbalance.yaml", "--no-store", "--csv", direct, "--db", db]).status == 0)
        let exported = try String(contentsOfFile: csv1, encoding: .utf8).replacingOccurrences(of: "\n2,", with: "\n,")
        #expect(try String(contentsOfFile: direct, encoding: .utf8) == exported, "--no-store leaves run_id empty, the rest is identical")
        #expect(try CLI.run(["runs", "list", "--db", db]).stdout.split(separator: "\n").count == 4, "--no-store stored nothing")
        _ = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: trace)))

        #expect(try CLI.run(["runs", "delete", "1", "--db", db]).stdout == "deleted run 1\n")
        #expect(try CLI.run(["runs", "show", "1", "--db", db]).status == 66)
    }

    @Test("EPSIM_DB chooses the database")
    func environment() throws {
        let db = try Self.freshDatabase()
        let out = try CLI.run(["run", "Scenarios/balanced.yaml"], environment: ["EPSIM_DB": db])
        #expect(out.stdout.contains("stored as run 1 in \(db)"))
        #expect(FileManager.default.fileExists(atPath: db))
    }

    @Test("two processes writing 20 runs each to one database: 40 complete runs")
    func concurrentWriters() throws {
        let db = try Self.freshDatabase()
        let script = "for i in $(seq 20); do \"\(CLI.executable.path)\" run Scenarios/balanced.yaml --format json --db \"\(db)\" > /dev/null || exit 1; done"
        let writers = (0..<2).map { _ -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = ["-c", script]
            p.currentDirectoryURL = CLI.repoRoot
            return p
        }
        for w in writers { try w.run() }
        for w in writers { w.waitUntilExit() }
        #expect(writers.allSatisfy { $0.terminationStatus == 0 })
        let list = try CLI.run(["runs", "list", "--db", db])
        let rows = list.stdout.split(separator: "\n").dropFirst()
        #expect(rows.count == 40)
        #expect(rows.allSatisfy { $0.contains("328.613") && $0.hasSuffix("full") })
        let show = try CLI.run(["runs", "show", "40", "--db", db])
        #expect(show.stdout.contains("(12 kernels stored)"))
    }

    @Test("unknown ids, corrupt and unwritable databases: clear errors, non-zero exit, nothing damaged")
    func errors() throws {
        let db = try Self.freshDatabase()
        _ = try CLI.run(["run", "Scenarios/balanced.yaml", "--db", db])
        for command in [["runs", "show", "7"], ["export", "7", "--csv", "/tmp/never.csv"], ["runs", "delete", "7"], ["compare", "7"]] {
            let out = try CLI.run(command + ["--db", db])
            #expect(out.status == 66, "\(command)")
            #expect(out.stderr.contains("has no run 7"))
        }
        let garbage = try CLI.temporaryFile("not a database\n", name: "garbage.sqlite")
        let out = try CLI.run(["run", "Scenarios/balanced.yaml", "--db", garbage])
        #expect(out.status == 74)
        #expect(out.stderr.contains("\(garbage): is not an SQLite database"))
        #expect(try String(contentsOfFile: garbage, encoding: .utf8) == "not a database\n")
        let unwritable = try CLI.run(["run", "Scenarios/balanced.yaml", "--db", "/nonexistent-folder/runs.sqlite"])
        #expect(unwritable.status == 74)
        #expect(unwritable.stderr.contains("folder /nonexistent-folder does not exist"))
        #expect(!unwritable.stderr.contains("Fatal error"))
        // The good database still holds its run.
        #expect(try CLI.run(["runs", "list", "--db", db]).stdout.split(separator: "\n").count == 2)
    }
}
