import Foundation
import Testing

/// What a script needs: JSON with the run's id, listings as JSON or CSV, one JSON document on
/// standard output, and the checkout's files found from any directory.
@Suite("Scripting and paths")
struct ScriptingTests {
    @Test("run --format json carries run_id and database; --csv's message leaves stdout one JSON document; runs list as JSON and CSV")
    func jsonAndListings() throws {
        let db = try StorageCommandTests.freshDatabase()
        let csv = URL(fileURLWithPath: db).deletingLastPathComponent().appendingPathComponent("timeline.csv").path
        let out = try CLI.run(["run", "Scenarios/balanced.yaml", "--format", "json", "--db", db, "--csv", csv])
        #expect(out.status == 0, "\(out.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        #expect(object["run_id"] as? Int == 1 && object["database"] as? String == db)
        #expect(out.stderr.contains("wrote timeline CSV"))
        let unstored = try CLI.run(["run", "Scenarios/balanced.yaml", "--format", "json", "--no-store"])
        let plain = try #require(try JSONSerialization.jsonObject(with: Data(unstored.stdout.utf8)) as? [String: Any])
        #expect(plain["run_id"] == nil && plain["database"] == nil)

        #expect(try CLI.run(["run", "Scenarios/batch-imbalance.yaml", "--db", db]).status == 0)
        let json = try CLI.run(["runs", "list", "--format", "json", "--db", db])
        let runs = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(runs.map { $0["id"] as? Int } == [2, 1])
        #expect(runs.map { $0["scenario"] as? String } == ["batch-imbalance", "balanced"])
        let listing = try CLI.run(["runs", "list", "--format", "csv", "--db", db]).stdout.split(separator: "\n")
        #expect(listing.first == "id,created_at,scenario,schedule,ranks,steps,step_latency_us,timeline")
        #expect(listing.count == 3 && listing[1].hasPrefix("2,") && listing[2].hasPrefix("1,"))
    }

    @Test("a relative path missing from the working directory is found in the checkout")
    func pathsFromAnywhere() throws {
        let elsewhere = URL(fileURLWithPath: NSTemporaryDirectory())
        let out = try CLI.spawn(CLI.executable, ["validate", "Scenarios/balanced.yaml"], in: elsewhere, environment: [:])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("Scenarios/balanced.yaml: ok"))
        let missing = try CLI.spawn(CLI.executable, ["validate", "Scenarios/no-such.yaml"], in: elsewhere, environment: [:])
        #expect(missing.status == 65 && missing.stderr.contains("Scenarios/no-such.yaml"))
    }
}
