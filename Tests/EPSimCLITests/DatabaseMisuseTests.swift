import Foundation
import Testing

/// The run database's promises (docs/database.md), each kept by real `epsim` processes:
/// concurrent first use, read-only folders, foreign and newer files, missing databases,
/// `db merge` of bad sources.
@Suite("The run database under misuse, end to end")
struct DatabaseMisuseTests {
    /// A fresh, empty folder (mode 0755) for one test's files.
    static func folder() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-db-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs `epsim` in `directory` with `$EPSIM_DB` unset (unless `environment` sets it),
    /// optionally through `prefix` (a command that runs it as another user).
    static func epsim(_ arguments: [String], in directory: URL = CLI.repoRoot, environment: [String: String] = [:], prefix: [String] = []) throws
        -> CLI.Output
    {
        var env: [String: String?] = ["EPSIM_DB": nil]
        for (k, v) in environment { env[k] = v }
        return try CLI.spawn(
            URL(fileURLWithPath: prefix.first ?? CLI.executable.path),
            prefix.isEmpty ? arguments : Array(prefix.dropFirst()) + [CLI.executable.path] + arguments, in: directory, environment: env)
    }

    /// The file's bytes and modification time.
    static func state(_ path: String) throws -> (Data, Date?) {
        (try Data(contentsOf: URL(fileURLWithPath: path)), (try FileManager.default.attributesOfItem(atPath: path))[.modificationDate] as? Date)
    }

    static func runIDs(_ db: String) throws -> [Int] {
        try epsim(["runs", "list", "--db", db]).stdout.split(separator: "\n").dropFirst().compactMap { Int($0.split(separator: " ").first ?? "") }
    }

    /// A database holding one run of `scenario` with its full timeline.
    static func database(in dir: URL, _ name: String = "runs.sqlite", scenario: String = "Scenarios/balanced.yaml") throws -> String {
        let db = dir.appendingPathComponent(name).path
        let out = try epsim(["run", scenario, "--db", db, "--format", "json"])
        #expect(out.status == 0, "\(out.stderr)")
        return db
    }

    /// Before the schema was created in one transaction, 1 to 4 of these 120 processes failed
    /// on every repetition (`table runs already exists`, `duplicate column name`).
    @Test("twelve processes storing a run in one new database at once, ten times over: every process succeeds, every run is stored")
    func concurrentFirstUse() throws {
        let dir = try Self.folder()
        for trial in 0..<10 {
            let db = dir.appendingPathComponent("new-\(trial).sqlite").path
            // Each waits for `go` to appear, so that all start within a few milliseconds.
            let go = dir.appendingPathComponent("go-\(trial)").path
            let processes = (0..<12).map { _ -> (Process, Pipe) in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/bin/sh")
                p.arguments = [
                    "-c", "while [ ! -e \"$0\" ]; do sleep 0.002; done; exec \"$@\"", go, CLI.executable.path,
                    "run", "Scenarios/balanced.yaml", "--db", db, "--timeline", "none", "--format", "json",
                ]
                p.currentDirectoryURL = CLI.repoRoot
                p.standardOutput = FileHandle.nullDevice
                let err = Pipe()
                p.standardError = err
                return (p, err)
            }
            for (p, _) in processes { try p.run() }
            Thread.sleep(forTimeInterval: 0.2)
            FileManager.default.createFile(atPath: go, contents: Data())
            for (p, err) in processes {
                let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                #expect(p.terminationStatus == 0, "trial \(trial): \(message)")
            }
            #expect(try Self.runIDs(db) == Array((1...12).reversed()), "trial \(trial)")
        }
    }

    @Test("read commands never write: list, show, export, compare, explain and plot leave the database's bytes and mtime as they were")
    func readsDoNotWrite() throws {
        let dir = try Self.folder()
        let db = try Self.database(in: dir)
        let before = try Self.state(db)
        let out = dir.appendingPathComponent("out").path
        for command in [
            ["runs", "list"], ["runs", "show", "1"], ["runs", "show", "1", "--format", "json"],
            ["export", "1", "--csv", out + ".csv", "--trace", out + ".json"],
            ["compare", "1", "1"], ["explain", "1"], ["plot", "1", "--svg", out + ".svg"],
        ] {
            let r = try Self.epsim(command + ["--db", db])
            #expect(r.status == 0, "\(command): \(r.stderr)")
            #expect(!r.stdout.isEmpty || command[0] == "export" || command[0] == "plot", "\(command)")
        }
        let after = try Self.state(db)
        #expect(after.0 == before.0 && after.1 == before.1)
    }

    @Test("a database in a folder this user cannot write: reads work, run and delete are refused before simulating, nothing changes")
    func readOnlyFolder() throws {
        let dir = try Self.folder()
        let db = try Self.database(in: dir)
        // chmod does not stop root: then the commands run as nobody (setpriv), for whom it does.
        var prefix: [String] = []
        if getuid() == 0 {
            guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return }  // readsDoNotWrite still checks the bytes
            prefix = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        }
        let exports = try Self.folder()
        #expect(chmod(exports.path, 0o777) == 0 && chmod(db, 0o444) == 0 && chmod(dir.path, 0o555) == 0)
        defer { _ = chmod(dir.path, 0o755) }
        let before = try Self.state(db)
        for command in [["runs", "list"], ["runs", "show", "1"], ["export", "1", "--csv", exports.appendingPathComponent("t.csv").path], ["compare", "1"]] {
            let r = try Self.epsim(command + ["--db", db], prefix: prefix)
            #expect(r.status == 0, "\(command): \(r.stderr)")
            #expect(!r.stderr.contains("readonly"), "\(command)")
        }
        #expect(try Self.epsim(["runs", "list", "--db", db], prefix: prefix).stdout.contains("balanced"))
        for command in [["run", "Scenarios/balanced.yaml"], ["runs", "delete", "1"]] {
            let r = try Self.epsim(command + ["--db", db], prefix: prefix)
            #expect(r.status == 74, "\(command): \(r.stderr)")
            #expect(r.stderr.contains("\(db): cannot open the database: the file or its folder is read-only"), "\(command): \(r.stderr)")
            #expect(r.stdout.isEmpty, "nothing was simulated or printed")
        }
        let after = try Self.state(db)
        #expect(after.0 == before.0 && after.1 == before.1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["runs.sqlite"])
    }

    @Test("another application's SQLite file and a newer EPSim's database are refused by run, reads and merge, with a message, and left unchanged")
    func foreignAndNewer() throws {
        let dir = try Self.folder()
        let db = try Self.database(in: dir, scenario: "Scenarios/batch-imbalance.yaml")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: db))
        // Another application's: its application_id (header offset 68) is not EPSim's.
        var foreign = bytes
        foreign.replaceSubrange(68..<72, with: [0x12, 0x34, 0x56, 0x78])
        let foreignPath = dir.appendingPathComponent("foreign.sqlite").path
        try foreign.write(to: URL(fileURLWithPath: foreignPath))
        // A newer EPSim's: schema version v5 recorded as v6, in grdb_migrations' row (record
        // header: TEXT of length 2) and in its primary-key index entry (TEXT of length 2, rowid).
        var found = 0
        for prefix in [[0x02, 0x11], [0x03, 0x11, 0x01]] as [[UInt8]] {
            while let range = bytes.firstRange(of: Data(prefix) + Data("v5".utf8)) {
                bytes.replaceSubrange(range, with: Data(prefix) + Data("v6".utf8))
                found += 1
            }
        }
        #expect(found == 2)
        let newerPath = dir.appendingPathComponent("newer.sqlite").path
        try bytes.write(to: URL(fileURLWithPath: newerPath))
        let good = try Self.database(in: dir, "good.sqlite")
        for (path, message) in [
            (
                foreignPath,
                "\(foreignPath): is an SQLite database that EPSim did not create (application_id 0x12345678 is another application's); it was left untouched"
            ),
            (newerPath, "\(newerPath): has schema version v6, newer than this epsim knows (up to v5); it was left untouched: use a newer epsim"),
        ] {
            let before = try Self.state(path)
            for command in [
                ["run", "Scenarios/deepseek-v3-decode-ep128.yaml", "--db", path, "--max-memory-gb", "0.000001"], ["runs", "list", "--db", path],
                ["runs", "show", "1", "--db", path], ["runs", "delete", "1", "--db", path], ["db", "merge", path, good],
                ["db", "merge", dir.appendingPathComponent("merged.sqlite").path, path],
            ] {
                let r = try Self.epsim(command)
                // 74, not the budget's 70: the database is checked before the run is simulated.
                #expect(r.status == 74, "\(command): \(r.stderr)")
                #expect(r.stderr.contains(message), "\(command): \(r.stderr)")
            }
            let after = try Self.state(path)
            #expect(after.0 == before.0 && after.1 == before.1)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("merged.sqlite").path))
    }

    @Test("reading a database that does not exist is exit 66 naming the path, from any folder, and creates nothing")
    func missingDatabase() throws {
        let dir = try Self.folder()
        let absolute = dir.appendingPathComponent("Results/epsim.sqlite").path
        for command in [
            ["runs", "list"], ["runs", "show", "3"], ["runs", "delete", "3"], ["export", "3", "--csv", "x.csv"], ["compare", "3"], ["explain", "3"],
            ["plot", "3", "--svg", "x.svg"],
        ] {
            let r = try Self.epsim(command, in: dir)
            #expect(r.status == 66, "\(command): \(r.stderr)")
            #expect(r.stderr.contains("error: Results/epsim.sqlite: no such run database (no file at "), "\(command): \(r.stderr)")
            #expect(r.stderr.contains(URL(fileURLWithPath: absolute).lastPathComponent), "\(command)")
            let named = try Self.epsim(command + ["--db", "named.sqlite"], in: dir)
            #expect(named.status == 66 && named.stderr.contains("named.sqlite: no such run database"), "\(command): \(named.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == [])
        // run checks --db before simulating: a folder that does not exist is 74, not the budget's 70.
        let run = try Self.epsim(
            [
                "run", "Scenarios/deepseek-v3-decode-ep128.yaml", "--db", dir.appendingPathComponent("no-such-folder/x.sqlite").path, "--max-memory-gb",
                "0.000001",
            ])
        #expect(run.status == 74 && run.stderr.contains("no-such-folder does not exist") && !run.stderr.contains("budget"), "\(run.stderr)")
    }

    @Test("db merge: a missing, damaged or corrupt source or the target itself is an error, the target unchanged or never created; merging twice adds nothing")
    func merge() throws {
        let dir = try Self.folder()
        let source = try Self.database(in: dir, "source.sqlite")
        let big = try Self.database(in: dir, "big.sqlite", scenario: "Scenarios/balanced-ep64.yaml")
        // Damaged past its schema: identified fine, it fails while its kernels are copied.
        var damaged = try Data(contentsOf: URL(fileURLWithPath: big))
        let pages = damaged.count / 4096
        #expect(pages > 20)
        damaged.replaceSubrange((pages - 10) * 4096..<pages * 4096, with: Data(repeating: 0xA5, count: 10 * 4096))
        let damagedPath = dir.appendingPathComponent("damaged.sqlite").path
        try damaged.write(to: URL(fileURLWithPath: damagedPath))
        let garbage = dir.appendingPathComponent("garbage.sqlite").path
        try Data("not a database\n".utf8).write(to: URL(fileURLWithPath: garbage))

        // README's `db merge Results/epsim.sqlite shard-*.sqlite` where no shard exists: the shell passes the pattern.
        let readme = try Self.epsim(["db", "merge", "merged.sqlite", "shard-*.sqlite"], in: dir)
        #expect(readme.status == 66 && readme.stderr.contains("shard-*.sqlite: no such run database"), "\(readme.stderr)")
        let newTarget = dir.appendingPathComponent("merged.sqlite").path
        for (bad, message) in [(garbage, "is not an SQLite database, or is damaged"), (damagedPath, "is not an SQLite database, or is damaged")] {
            let r = try Self.epsim(["db", "merge", newTarget, source, bad])
            #expect(r.status == 74 && r.stderr.contains("\(bad): \(message)"), "\(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
        #expect(!FileManager.default.fileExists(atPath: newTarget), "a failed merge leaves no target behind")

        let target = try Self.database(in: dir, "target.sqlite", scenario: "Scenarios/batch-imbalance.yaml")
        let first = try Self.epsim(["db", "merge", target, source])
        #expect(first.status == 0 && first.stdout == "merged 1 runs from \(source) as runs 2...2\n", "\(first.stdout)\(first.stderr)")
        let again = try Self.epsim(["db", "merge", target, source, source])
        #expect(again.status == 0)
        #expect(again.stdout == "merged 0 runs from \(source); skipped 1 already in \(target)\n".repeated(2))
        #expect(try Self.runIDs(target) == [2, 1])
        let list = try Self.epsim(["runs", "list", "--db", target]).stdout
        // A good source first (not `big`: the damaged file's run is big's, skipped once big's is in).
        let other = try Self.database(in: dir, "other.sqlite", scenario: "Scenarios/attention-imbalance.yaml")
        for (bad, status) in [(damagedPath, 74), (garbage, 74), (dir.appendingPathComponent("missing.sqlite").path, 66)] as [(String, Int32)] {
            let r = try Self.epsim(["db", "merge", target, other, bad])
            #expect(r.status == status && r.stderr.contains(bad), "\(r.stderr)")
        }
        let clock = ContinuousClock()
        let started = clock.now
        let itself = try Self.epsim(["db", "merge", target, dir.path + "/./target.sqlite"])
        #expect(clock.now - started < .seconds(10), "refused at once, not after the busy timeout")
        #expect(itself.status == 74 && itself.stderr.contains("is the target database itself"), "\(itself.stderr)")
        #expect(try Self.epsim(["runs", "list", "--db", target]).stdout == list, "failed merges left the target as it was")
    }
}

extension String {
    fileprivate func repeated(_ n: Int) -> String { String(repeating: self, count: n) }
}

@Suite("Devices stay devices")
struct DeviceTests {
    /// `/dev/null`'s kind and device numbers.
    static func devNull() -> (Bool, UInt64) {
        var info = stat()
        guard stat("/dev/null", &info) == 0 else { return (false, 0) }
        return (info.st_mode & S_IFMT == S_IFCHR, UInt64(info.st_rdev))
    }

    @Test("/dev/null as an output or a database is written through or refused, never replaced by a file")
    func devNullSurvives() throws {
        let before = Self.devNull()
        #expect(before.0, "/dev/null is a character device before the test")
        for command in [
            ["run", "Scenarios/balanced.yaml", "--no-store", "--csv", "/dev/null"],
            ["run", "Scenarios/balanced.yaml", "--no-store", "--trace", "/dev/null"],
            ["plot", "Scenarios/balanced.yaml", "--svg", "/dev/null"],
        ] {
            let out = try CLI.run(command)
            #expect(out.status == 0, "\(command): \(out.stderr)")
        }
        let source = URL(fileURLWithPath: try CLI.temporaryFile("", name: "x")).deletingLastPathComponent().appendingPathComponent("source.sqlite").path
        #expect(try CLI.run(["run", "Scenarios/balanced.yaml", "--db", source]).status == 0)
        for command in [["run", "Scenarios/balanced.yaml", "--db", "/dev/null"], ["runs", "list", "--db", "/dev/null"], ["db", "merge", "/dev/null", source]] {
            let out = try CLI.run(command)
            #expect(out.status == 74 && out.stderr.contains("/dev/null: is not a regular file"), "\(command): \(out.stderr)")
        }
        #expect(Self.devNull() == before, "/dev/null is still the same device")
        #expect(!FileManager.default.fileExists(atPath: "/dev/null-wal"))
    }
}

@Suite("Outputs never overwrite inputs")
struct OutputClashTests {
    @Test("an output that is the database, the scenario, a table it reads or another output is a usage error; nothing is changed")
    func clashes() throws {
        let dir = URL(fileURLWithPath: try CLI.temporaryFile("", name: "x")).deletingLastPathComponent()
        let db = dir.appendingPathComponent("a.sqlite").path
        let scenario = dir.appendingPathComponent("s.yaml").path
        let table = dir.appendingPathComponent("tab.csv").path
        try String(contentsOfFile: CLI.repoRoot.path + "/Scenarios/tables/h200-shared-dense-fp8.csv", encoding: .utf8).write(toFile: table, atomically: true, encoding: .utf8)
        try "hardware: h200\ncluster: {ranks: 2}\ncosts: {table: tab.csv}\n".write(toFile: scenario, atomically: true, encoding: .utf8)
        #expect(try CLI.run(["run", scenario, "--db", db]).status == 0)
        let before = try [db, scenario, table].map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("link.sqlite").path, withDestinationPath: db)
        for (arguments, message) in [
            (["run", scenario, "--db", db, "--csv", db], "is the run database"),
            (["run", scenario, "--db", db, "--trace", dir.appendingPathComponent("link.sqlite").path], "is the run database"),
            (["run", scenario, "--no-store", "--trace", scenario], "is the scenario"),
            (["run", scenario, "--no-store", "--csv", table], "is a file the scenario reads"),
            (["run", scenario, "--no-store", "--csv", dir.appendingPathComponent("x.csv").path, "--trace", dir.appendingPathComponent("x.csv").path], "is the path of --csv"),
            (["export", "1", "--db", db, "--trace", db], "is the run database"),
            (["plot", "1", "--db", db, "--svg", db], "is the run database"),
            (["plot", scenario, "--svg", scenario], "is an input"),
        ] {
            let out = try CLI.run(arguments)
            #expect(out.status == 64 && out.stderr.contains(message), "\(arguments): \(out.stderr)")
        }
        #expect(try [db, scenario, table].map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == before)
    }
}
