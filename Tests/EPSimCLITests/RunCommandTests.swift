import Foundation
import Testing

@Suite("epsim run and validate, end to end")
struct RunCommandTests {
    @Test("there are shipped scenarios")
    func shipped() {
        #expect(CLI.shippedScenarios.count >= 7)
    }

    @Test("every shipped scenario validates and runs", arguments: CLI.shippedScenarios)
    func runsShipped(_ path: String) throws {
        let validate = try CLI.run(["validate", path])
        #expect(validate.status == 0, "\(validate.stderr)")
        #expect(validate.stdout.contains("\(path): ok"))
        let run = try CLI.run(["run", path, "--format", "json", "--timeline", "summary"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        let latency = json?["step_latency_us"] as? Double ?? 0
        #expect(latency > 0)
        let rows = json?["per_rank"] as? [[String: Any]] ?? []
        #expect(rows.count == (json?["ranks"] as? Int ?? -1) * (json?["steps"] as? Int ?? -1))
        // The step latency is the largest per-rank end-to-end latency.
        let maxRank = rows.compactMap { $0["e2e_us"] as? Double }.max() ?? -1
        #expect(abs(maxRank - latency) < 1e-9)
    }

    @Test("batch imbalance: the light rank's dispatch shows the wait for the heavy rank")
    func batchImbalanceTable() throws {
        let run = try CLI.run(["run", "Scenarios/batch-imbalance.yaml"])
        #expect(run.status == 0)
        let lines = run.stdout.split(separator: "\n").map(String.init)
        let header = lines.first { $0.contains("dispatch_wait_us") }!.split(separator: " ").map(String.init)
        let waitColumn = header.firstIndex(of: "dispatch_wait_us")!
        func row(_ rank: Int) -> [String] {
            lines.first { $0.split(separator: " ").first == Substring(String(rank)) && $0.contains(".") }!
                .split(separator: " ").map(String.init)
        }
        let heavyWait = Double(row(0)[waitColumn])!
        let lightWait = Double(row(1)[waitColumn])!
        #expect(lightWait > heavyWait, "the light rank waits longer inside its dispatch")
        #expect(run.stdout.contains("step latency: 311.451 us"))
    }

    @Test("--schedule overrides the file")
    func scheduleOverride() throws {
        let none = try CLI.run(["run", "Scenarios/balanced.yaml", "--format", "json"])
        let tbo = try CLI.run(["run", "Scenarios/balanced.yaml", "--format", "json", "--schedule", "deepseek-decode"])
        #expect(none.status == 0 && tbo.status == 0)
        #expect(none.stdout.contains("\"schedule\" : \"none\""))
        #expect(tbo.stdout.contains("\"schedule\" : \"deepseek-decode\""))
    }

    static let malformed: [(String, String)] = [
        ("cluster: {ranks: 2, colour: red}\n", "scenario.yaml:1:29: cluster.colour: unknown key \"colour\""),
        ("cluster: {ranks: 2}\nworkload: {tokens_per_rank: [1, 2, 3]}\n", "workload.tokens_per_rank: expected one value per rank (2 values)"),
        ("cluster: {ranks: 1000000000}\n", "cluster.ranks: expected a number of ranks in 1...8192, found 1000000000"),
        ("cluster: {ranks: 3}\n", "model.experts (256) must be divisible by cluster.ranks (3)"),
        ("cluster: {ranks: 2}\nmodel: {experts: 4, top_k: 5}\n", "top_k (5) must not exceed model.experts (4)"),
        (
            "cluster: {ranks: 2}\ncosts: {attn0_us: .inf}\n",
            "costs.attn0_us: expected a duration in microseconds in 0...1000000000, found the non-finite value .inf"
        ),
        ("cluster: {ranks: [2]\n", "YAML syntax error"),
    ]

    @Test("malformed scenarios: a message naming file and key, exit status 65, no stack trace", arguments: malformed)
    func malformedScenario(_ yaml: String, _ expected: String) throws {
        let path = try CLI.temporaryFile(yaml)
        for command in ["run", "validate"] {
            let out = try CLI.run([command, path])
            #expect(out.status == 65, "\(command): \(out.stderr)")
            #expect(out.stderr.contains(expected), "\(out.stderr)")
            #expect(out.stderr.contains(path))
            #expect(!out.stderr.contains("Fatal error") && !out.stderr.contains("Stack dump"))
            #expect(out.stdout.isEmpty)
        }
    }

    @Test("a missing scenario file is reported, not crashed on")
    func missingFile() throws {
        let out = try CLI.run(["run", "Scenarios/does-not-exist.yaml"])
        #expect(out.status == 65)
        #expect(out.stderr.contains("Scenarios/does-not-exist.yaml: cannot read the file"))
    }
}

@Suite("epsim compare, end to end")
struct CompareCommandTests {
    @Test("TBO on and off side by side, in every format")
    func formats() throws {
        let table = try CLI.run(["compare", "Scenarios/batch-imbalance.yaml", "--schedules", "none,deepseek-decode"])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.contains("batch-imbalance [none]") && table.stdout.contains("batch-imbalance [deepseek-decode]"))
        #expect(table.stdout.contains("exposed_comm_us"))

        let csv = try CLI.run(["compare", "Scenarios/batch-imbalance.yaml", "--schedules", "none,deepseek-decode", "--format", "csv"])
        let rows = csv.stdout.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        #expect(rows[0] == ["metric", "batch-imbalance [none]", "batch-imbalance [deepseek-decode]", "delta_vs_first batch-imbalance [deepseek-decode]"])
        let step = rows.first { $0[0] == "step_latency_us" }!
        #expect(abs(Double(step[2])! - Double(step[1])! - Double(step[3])!) < 1e-9)

        let json = try CLI.run(["compare", "Scenarios/balanced.yaml", "Scenarios/batch-imbalance.yaml", "--format", "json"])
        let entries = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(entries.count == 2)
        #expect((entries[0]["delta_vs_first"] as? [String: Double])?["step_latency_us"] == 0)

        let md = try CLI.run(["compare", "Scenarios/balanced.yaml", "--format", "markdown"])
        #expect(md.stdout.hasPrefix("| metric | balanced [none] |\n|---|---:|\n"))
    }

    @Test("an unknown schedule name is a usage error")
    func unknownSchedule() throws {
        let out = try CLI.run(["compare", "Scenarios/balanced.yaml", "--schedules", "none,tbo"])
        #expect(out.status == 64)
        #expect(out.stderr.contains("unknown schedule \"tbo\"; expected one of none, deepseek-decode, deepseek-prefill"))
    }
}

@Suite("Worked answers")
struct AnswersPageTests {
    @Test("scripts/answers.sh reproduces docs/answers.md and its pictures byte for byte")
    func reproducible() throws {
        let out = URL(fileURLWithPath: try CLI.temporaryFile("", name: "x")).deletingLastPathComponent().appendingPathComponent("docs")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["scripts/answers.sh", out.path]
        process.currentDirectoryURL = CLI.repoRoot
        var env = ProcessInfo.processInfo.environment
        env["EPSIM"] = CLI.executable.path
        process.environment = env
        process.standardError = Pipe()
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let docs = CLI.repoRoot.appendingPathComponent("docs")
        #expect(
            try String(contentsOf: out.appendingPathComponent("answers.md"), encoding: .utf8)
                == String(contentsOf: docs.appendingPathComponent("answers.md"), encoding: .utf8), "docs/answers.md is stale: run scripts/answers.sh")
        let pictures = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("img").path).filter { $0.hasSuffix(".svg") }
        #expect(pictures.count == 11)
        for name in pictures {
            #expect(
                try Data(contentsOf: out.appendingPathComponent("img/\(name)")) == Data(contentsOf: docs.appendingPathComponent("img/\(name)")),
                "docs/img/\(name) is stale")
        }
    }
}

@Suite("run budgets, end to end")
struct BudgetCommandTests {
    @Test("validate refuses what run would refuse for memory, and names the remedy; a summary timeline fits")
    func validateBudget() throws {
        let path = try CLI.temporaryFile(
            "hardware: h800\ncluster: {ranks: 256, gpus_per_node: 8}\nmodel: {preset: deepseek-v3}\nschedule: deepseek-decode\nsteps: 5000\n")
        for command in [["validate", path], ["run", path, "--no-store"]] {
            let out = try CLI.run(command)
            #expect(out.status == 70, "\(command[0]): \(out.stderr)")
            #expect(out.stderr.contains("over its memory budget of 8.59 GB") && out.stderr.contains("--timeline summary"), "\(out.stderr)")
            #expect(!out.stderr.contains("Fatal error"))
        }
        let ok = try CLI.run(["validate", path, "--timeline", "summary"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("\(path): ok"))
        let bad = try CLI.run(["run", path, "--max-memory-gb", "-1"])
        #expect(bad.status == 64 && bad.stderr.contains("--max-memory-gb"))
        let run = try CLI.run(["run", path, "--no-store"])
        #expect(run.stderr.contains("error: \(path): budget-exceeded: "), "a run's refusal names its file: \(run.stderr)")
    }

    @Test("validate reports every file, good and bad, and exits with the first failure's status")
    func validateEveryFile() throws {
        let first = try CLI.temporaryFile("cluster: {ranks: 3}\nmodel: {experts: 8}\n")
        let second = try CLI.temporaryFile("cluster: {ranks: 0}\n")
        let out = try CLI.run(["validate", first, "Scenarios/balanced.yaml", second])
        #expect(out.status == 65)
        #expect(out.stderr.contains(first) && out.stderr.contains(second), "\(out.stderr)")
        #expect(out.stdout.contains("Scenarios/balanced.yaml: ok"))
    }
}
