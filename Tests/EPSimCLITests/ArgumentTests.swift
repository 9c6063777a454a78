import Foundation
import Testing

/// Every command's options misused: each is a usage error (exit 64) that names the option
/// and what was expected, before anything is allocated for it, never a trap or a silent
/// empty result.
@Suite("Command-line arguments, end to end")
struct ArgumentTests {
    /// A database holding run 1 (balanced, full timeline: 2 ranks, 1 step) and run 2 (the
    /// same scenario run for 2 steps).
    static let database: String = {
        let db = URL(fileURLWithPath: try! CLI.temporaryFile("", name: "x")).deletingLastPathComponent().appendingPathComponent("runs.sqlite").path
        let twoSteps = try! CLI.temporaryFile(try! String(contentsOfFile: CLI.repoRoot.path + "/Scenarios/balanced.yaml", encoding: .utf8) + "steps: 2\n")
        for path in ["Scenarios/balanced.yaml", twoSteps] { _ = try! CLI.run(["run", path, "--db", db]) }
        return db
    }()

    static let folder = FileManager.default.temporaryDirectory.path
    static let svg = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-args-\(UUID().uuidString).svg").path

    static let misuses: [([String], String)] = [
        // Ranks and steps: form first, then against the run, before a list is built.
        (["plot", "1", "--svg", svg, "--ranks", "5-2"], "--ranks \"5-2\": the range 5-2 goes down; write it 2-5"),
        (
            ["plot", "1", "--svg", svg, "--ranks", "0-9223372036854775807"],
            "--ranks \"0-9223372036854775807\": run 1 has 2 ranks (0-1); there is no rank 9223372036854775807"
        ),
        (["plot", "1", "--svg", svg, "--ranks", "0-1000000000"], "run 1 has 2 ranks (0-1); there is no rank 1000000000"),
        (["plot", "1", "--svg", svg, "--ranks", "999"], "--ranks \"999\": run 1 has 2 ranks (0-1); there is no rank 999"),
        (["plot", "1", "--svg", svg, "--ranks=-3"], "--ranks \"-3\": \"-3\" is not a rank (0 or more)"),
        (["plot", "1", "--svg", svg, "--ranks", "0,,1"], "--ranks \"0,,1\": an empty entry"),
        (["plot", "1", "--svg", svg, "--ranks", "1-2-3"], "\"1-2-3\" is not a rank (0 or more) or a range such as 2-5"),
        (["plot", "Scenarios/balanced.yaml", "--svg", svg, "--ranks", "2"], "--ranks \"2\": Scenarios/balanced.yaml has 2 ranks (0-1); there is no rank 2"),
        (["plot", "1", "--svg", svg, "--step", "5"], "--step 5: run 1 has 1 step (0 only); there is no step 5"),
        (["plot", "2", "--svg", svg, "--step", "2"], "--step 2: run 2 has 2 steps (0-1); there is no step 2"),
        (["plot", "Scenarios/balanced.yaml", "--svg", svg, "--step", "1"], "--step 1: Scenarios/balanced.yaml has 1 step (0 only)"),
        (["plot", "1", "--svg", svg, "--step=-1"], "--step -1: expected a step number, 0 or more"),
        (["explain", "1", "--step", "5"], "--step 5: run 1 has 1 step (0 only)"),
        (["explain", "1", "--step=-1"], "--step -1: expected a step number, 0 or more"),
        // Options that do not go together.
        (["plot", "--compare", "1", "--svg", svg, "--ranks", "0"], "--ranks selects from a run's timeline; --compare draws whole runs"),
        (["plot", "--compare", "1", "--svg", svg, "--step", "0"], "--step selects from a run's timeline; --compare draws whole runs"),
        (["plot", "1", "--csv", "sweep.csv", "--x", "a", "--y", "b", "--svg", svg], "--csv draws the CSV alone"),
        (["plot", "1", "--svg", svg, "--x", "a"], "--x names a column of --csv"),
        (["plot", "--csv", "sweep.csv", "--x", "a", "--svg", svg], "--csv needs --x COLUMN and --y COLUMN"),
        (["plot", "1", "2", "--svg", svg], "give one run id or scenario file (or --compare for several), found 2"),
        // Output paths: a directory, a folder that does not exist, nothing.
        (["plot", "1", "--svg", folder], "--svg \(folder): is a directory; expected the path of a file to write"),
        (["plot", "1", "--svg", "/no/such/folder/t.svg"], "--svg /no/such/folder/t.svg: the folder /no/such/folder does not exist"),
        (["run", "Scenarios/balanced.yaml", "--no-store", "--csv", folder], "--csv \(folder): is a directory"),
        (
            ["run", "Scenarios/balanced.yaml", "--no-store", "--trace", "/no/such/folder/t.json"],
            "--trace /no/such/folder/t.json: the folder /no/such/folder does not exist"
        ),
        (["run", "Scenarios/balanced.yaml", "--no-store", "--csv", ""], "--csv: expected the path of a file to write, found an empty string"),
        (["export", "1", "--csv", folder], "--csv \(folder): is a directory"),
        (["calibrate", "--markdown", folder], "--markdown \(folder): is a directory"),
        (["calibrate", "--compute", "c.csv", "--table", "/no/such/folder/t.csv"], "--table /no/such/folder/t.csv: the folder /no/such/folder does not exist"),
        (["calibrate", "--scenarios", "/no/such/folder"], "--scenarios /no/such/folder: expected the folder of the published-table scenarios"),
        (["bench", "--markdown", folder], "--markdown \(folder): is a directory"),
        // Names and lists.
        (
            ["run", "Scenarios/balanced.yaml", "--no-store", "--schedule", "tbo"],
            "--schedule: unknown schedule \"tbo\"; expected one of none, deepseek-decode, deepseek-prefill"
        ),
        (["explain", "Scenarios/balanced.yaml", "--schedule", "tbo"], "--schedule: unknown schedule \"tbo\""),
        (["compare", "Scenarios/balanced.yaml", "--schedules", ""], "--schedules \"\": an empty name"),
        (["compare", "Scenarios/balanced.yaml", "--schedules", "none,,deepseek-decode"], "--schedules \"none,,deepseek-decode\": an empty name"),
        (["runs", "list", "--limit", "0"], "--limit 0: expected a number of runs, 1 or more"),
        (["runs", "list", "--limit=-1"], "--limit -1: expected a number of runs, 1 or more"),
        (["bench", "--measure", "Scenarios/balanced.yaml", "--set", "steps"], "--set \"steps\": expected key.path=value"),
        // Sweeps.
        (["sweep", "Scenarios/balanced.yaml", "--vary", "steps=1", "--jobs", "0"], "--jobs must be at least 1"),
        (["sweep", "Scenarios/balanced.yaml", "--vary", "steps=1", "--jobs=-3"], "--jobs must be at least 1"),
        (["sweep", "Scenarios/balanced.yaml", "--vary", "steps=1", "--shard", "3/2"], "--shard \"3/2\": expected i/n with 0 <= i < n"),
        (["sweep", "Scenarios/balanced.yaml", "--vary", "steps=1", "--shard=-1/2"], "--shard \"-1/2\": expected i/n with 0 <= i < n"),
        (["sweep", "Scenarios/balanced.yaml"], "give at least one --vary key.path=value1,value2"),
        (["sweep", "Scenarios/balanced.yaml", "--vary", "steps=1", "--vary", "steps=2"], "--vary steps is given twice"),
        (["sweep", "Scenarios/balanced.yaml", "--vary", "workload..seed=1"], "the key path \"workload..seed\" has an empty part"),
        (["sweep", "Scenarios/balanced.yaml", "--vary", "steps=1,,2"], "--vary \"steps=1,,2\": a value is empty"),
        (
            [
                "sweep", "Scenarios/balanced.yaml", "--vary", "workload.seed=" + (1...1000).map(String.init).joined(separator: ","),
                "--vary", "costs.gemm_us=" + (1...1001).map(String.init).joined(separator: ","),
            ],
            "--vary gives 1000 x 1001 points, more than a sweep may hold (1000000)"
        ),
    ]

    @Test("a misused option: exit 64, a message naming the option and what was expected, no output", arguments: misuses)
    func misuse(_ arguments: [String], _ expected: String) throws {
        let out = try CLI.run(arguments + (["plot", "explain", "export", "runs"].contains(arguments[0]) ? ["--db", Self.database] : []))
        #expect(out.status == 64, "\(arguments): \(out.stderr)")
        #expect(out.stderr.contains(expected), "\(arguments): \(out.stderr)")
        #expect(out.stdout.isEmpty, "\(arguments): \(out.stdout)")
        #expect(!out.stderr.contains("Fatal error"))
        #expect(!FileManager.default.fileExists(atPath: Self.svg), "nothing drawn")
    }

    @Test("--ranks and --step select what they say: ranks in the order given, once each, and a step the run has")
    func selection() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-args-\(UUID().uuidString).svg").path
        let out = try CLI.run(["plot", "2", "--svg", path, "--ranks", "1,0-1", "--step", "1", "--db", Self.database])
        #expect(out.status == 0, "\(out.stderr)")
        let svg = try String(contentsOfFile: path, encoding: .utf8)
        #expect(svg.contains("— step 1,"), "the step asked for is drawn")
        let lanes = svg.components(separatedBy: ">rank ").dropFirst().compactMap { $0.components(separatedBy: "</text>").first }
            .filter { $0.allSatisfy(\.isNumber) }
        #expect(lanes == ["1", "0"], "rank 1's lane, then rank 0's, each once")
    }
}
