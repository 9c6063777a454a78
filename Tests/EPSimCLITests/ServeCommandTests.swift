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
}
