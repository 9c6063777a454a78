import EPSim
import Foundation
import GRDB
import Testing

@testable import EPSimStore

/// docs/database.md must stay true: its example SQL runs on a database that `epsim` writes,
/// and its schema tables name every column the store creates.
@Suite("docs/database.md")
struct DatabaseDocTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var page: String { get throws { try String(contentsOf: root.appendingPathComponent("docs/database.md"), encoding: .utf8) } }

    /// Every statement in the page's ```sql blocks, and the SQL in its pandas example.
    static func queries() throws -> [String] {
        let text = try page
        var queries: [String] = []
        for block in text.components(separatedBy: "```sql\n").dropFirst() {
            let sql = block.components(separatedBy: "```")[0]
            let lines = sql.split(separator: "\n").filter { !$0.hasPrefix("--") }.joined(separator: "\n")
            queries += lines.split(separator: ";").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        }
        for part in text.components(separatedBy: "pd.read_sql(\"").dropFirst() { queries.append(part.components(separatedBy: "\"")[0]) }
        return queries
    }

    /// Runs 1 to 4 as the examples expect them: batch-imbalance (TBO off) twice, balanced,
    /// and batch-imbalance with TBO, all with full timelines.
    static func database() throws -> RunStore {
        let store = try RunStore(path: try temporaryDatabasePath())
        for file in ["batch-imbalance", "batch-imbalance", "balanced", "batch-imbalance-tbo"] {
            let path = root.appendingPathComponent("Scenarios/\(file).yaml").path
            var s = try Scenario.load(path: path)
            if file == "batch-imbalance-tbo" { s.name = "batch-imbalance" }
            try store.save(Simulation.run(s), scenario: s, source: RunSource(scenarioPath: path, scenarioText: ""), wallSeconds: 0, timeline: .full)
        }
        return store
    }

    @Test("every example query runs and returns rows")
    func examples() throws {
        let queries = try Self.queries()
        #expect(queries.count >= 6)
        let store = try Self.database()
        for sql in queries {
            let rows = try store.read { db in try Row.fetchAll(db, sql: sql) }
            #expect(!rows.isEmpty, "\(sql)")
        }
    }

    @Test("the schema tables name every column of every table and view")
    func columns() throws {
        let text = try Self.page
        let store = try Self.database()
        for table in ["runs", "rank_steps", "kernels", "runs_us", "rank_steps_us", "kernels_us", "serve_runs", "serve_steps", "serve_rank_steps", "serve_requests"] {
            let columns = try store.read { db in try db.columns(in: table).map(\.name) }
            for c in columns where table.hasSuffix("_us") == false {
                // A column is named whole, or as `_suffix` after its family (`rank_latency_mean_ps`, `_min_ps`).
                let named = text.contains("`\(c)`") || text.contains("`_\(c.split(separator: "_").suffix(2).joined(separator: "_"))`")
                #expect(named, "\(table).\(c) is not documented")
            }
            #expect(!columns.isEmpty)
        }
    }
}
