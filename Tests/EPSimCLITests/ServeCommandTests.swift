import Foundation
import Testing

@Suite("epsim serve")
struct ServeCommandTests {
    @Test("the shipped EP 16 scenario, shortened, compares two policies: JSON a script can read, rows stored, CSV and SVG written")
    func compare() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-serve-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let db = dir.appendingPathComponent("db.sqlite").path
        let out = try CLI.run([
            "serve", "Scenarios/serving/serve-ep16.yaml", "--vary", "serving.policy=round-robin,least-kv", "--vary", "serving.steps=12",
            "--vary", "serving.warmup_steps=2", "--format", "json", "--db", db, "--csv-dir", dir.path, "--plot", dir.appendingPathComponent("p.svg").path,
        ])
        #expect(out.status == 0, "\(out.stderr)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]])
        #expect(rows.count == 2)
        let summaries = rows.compactMap { $0["summary"] as? [String: Any] }
        #expect(summaries.map { $0["policy"] as? String } == ["round-robin", "least-kv"])
        #expect(summaries.allSatisfy { ($0["steps"] as? Int) == 12 && ($0["mean_step_us"] as? Double ?? 0) > 0 })
        #expect(rows.compactMap { $0["serve_id"] as? Int } == [1, 2])
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(files.filter { $0.hasSuffix(".csv") }.count == 6)
        #expect(files.contains("p.svg"))
    }

    @Test("a scenario without a serving section, and a bad serving value, are refused with exit 65 and a key path")
    func refusals() throws {
        let none = try CLI.run(["serve", "Scenarios/balanced.yaml", "--no-store"])
        #expect(none.status == 65 && none.stderr.contains("no serving section"))
        let bad = try CLI.run(["serve", "Scenarios/serving/serve-ep16.yaml", "--vary", "serving.policy=fastest", "--no-store"])
        #expect(bad.status == 65 && bad.stderr.contains("serving.policy"), "\(bad.stderr)")
    }

    @Test("bad outputs are refused before any step (exit 64): --csv-dir on a file, a --vary value given twice")
    func refusedArguments() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-serve-file-\(UUID().uuidString)").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let onFile = try CLI.run(["serve", "Scenarios/serving/serve-ep16.yaml", "--csv-dir", file, "--no-store"])
        #expect(onFile.status == 64 && onFile.stderr.contains("--csv-dir") && onFile.stderr.contains("is a file"), "\(onFile.stderr)")
        let under = try CLI.run(["serve", "Scenarios/serving/serve-ep16.yaml", "--csv-dir", file + "/sub", "--no-store"])
        #expect(under.status == 64 && under.stderr.contains("cannot be created"), "\(under.stderr)")
        let twice = try CLI.run(["serve", "Scenarios/serving/serve-ep16.yaml", "--vary", "serving.policy=least-kv,least-kv", "--no-store"])
        #expect(twice.status == 64 && twice.stderr.contains("given twice"), "\(twice.stderr)")
    }

    @Test("a bad line of a request trace is named in the trace file, with no empty point prefix")
    func traceErrorLocation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-serve-trace-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let shipped = try String(contentsOfFile: "Scenarios/serving/serve-ep16.yaml", encoding: .utf8)
        let yaml = shipped.replacingOccurrences(of: "arrivals: {process: poisson, rate_per_s: 90}", with: "arrivals: {process: trace, file: requests.csv}")
            .split(separator: "\n").filter { !$0.contains("input_tokens") && !$0.contains("output_tokens") }.joined(separator: "\n")
        try yaml.write(to: dir.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
        try "arrival_us,input_tokens,output_tokens\n0,100,5\n10,many,5\n".write(to: dir.appendingPathComponent("requests.csv"), atomically: true, encoding: .utf8)
        let out = try CLI.run(["serve", dir.appendingPathComponent("s.yaml").path, "--no-store"])
        #expect(out.status == 65, "\(out.stderr)")
        #expect(out.stderr.contains("requests.csv:3"), "\(out.stderr)")
        #expect(!out.stderr.contains("point 0") && !out.stderr.contains("s.yaml:3"), "\(out.stderr)")
    }

    @Test("runs of different EP sizes: the table gives each its ranks; a figure over no requests is '-', blank in CSV")
    func shapesAndEmptyFigures() throws {
        let args = [
            "serve", "Scenarios/serving/serve-ep16.yaml", "--vary", "cluster.ranks=8,16", "--vary", "serving.steps=3", "--vary", "serving.warmup_steps=2", "--no-store",
        ]
        let table = try CLI.run(args)
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        let header = try #require(lines.first { $0.hasPrefix("point") })
        let cells = header.split(separator: " ").map(String.init)
        #expect(cells.contains("ranks") && !lines[0].contains("16 ranks"), "\(table.stdout)")
        let rankColumn = try #require(cells.firstIndex(of: "ranks"))
        let tpotColumn = try #require(cells.firstIndex(of: "tpot_p99_us"))
        // The point label is two words (`ranks=8 steps=3 ...`): count cells from the right.
        let rows = lines.filter { $0.hasPrefix("ranks=") }.map { $0.split(separator: " ").map(String.init) }
        #expect(rows.count == 2)
        let labelWords = rows[0].count - (cells.count - 1)
        #expect(rows.map { $0[labelWords + rankColumn - 1] } == ["8", "16"], "\(table.stdout)")
        // Outputs of 50-400 tokens: nothing finishes in 3 steps.
        #expect(rows.allSatisfy { $0[labelWords + tpotColumn - 1] == "-" }, "\(table.stdout)")
        let csv = try CLI.run(args + ["--format", "csv"])
        let csvLines = csv.stdout.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let csvHeader = try #require(csvLines.first)
        let r = try #require(csvHeader.firstIndex(of: "ranks"))
        let t = try #require(csvHeader.firstIndex(of: "tpot_p99_us"))
        #expect(csvLines.dropFirst().map { $0[r] } == ["8", "16"] && csvLines.dropFirst().allSatisfy { $0[t] == "" }, "\(csv.stdout)")
    }
}
