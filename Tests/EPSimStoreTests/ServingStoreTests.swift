import EPSim
import Foundation
import GRDB
import Testing

@testable import EPSimStore

@Suite("Serving runs in the database")
struct ServingStoreTests {
    static func result() throws -> (ServingResult, Scenario) {
        let yaml = """
            name: serve-store
            cluster: {ranks: 4, gpus_per_node: 1}
            model: {experts: 16, top_k: 4, hidden: 7168, moe_layers: 2}
            workload: {routing: balanced}
            network: {model: ideal}
            costs: {attn0_us: 30, attn1_us: 60, shared_us: 15, gemm_us: 50}
            serving:
              arrivals: {process: poisson, rate_per_s: 20000}
              requests: 50
              input_tokens: 1000
              output_tokens: {distribution: uniform, min: 2, max: 9}
              max_requests_per_rank: 4
              steps: 40
            """
        let s = try Scenario.parse(yaml: yaml, file: "serve-store.yaml")
        return (try ServingLoop(scenario: s).run(), s)
    }

    @Test("a serving run is stored whole in one transaction: every step, rank-step and request, times exact in picoseconds")
    func storeAndRead() throws {
        let (r, s) = try Self.result()
        let store = try RunStore(path: try temporaryDatabasePath())
        let id = try store.saveServing(r, scenario: s, source: RunSource(scenarioPath: "serve-store.yaml", scenarioText: ""))
        #expect(try store.servingRowCount("serve_steps", serveID: id) == r.steps.count)
        #expect(try store.servingRowCount("serve_rank_steps", serveID: id) == r.steps.count * 4)
        #expect(try store.servingRowCount("serve_requests", serveID: id) == r.requests.count)
        let runs = try store.servingRuns()
        #expect(runs.map(\.id) == [id] && runs[0].policy == "round-robin")
        let summary = try JSONDecoder().decode(ServingSummary.self, from: Data(runs[0].summaryJSON.utf8))
        #expect(summary == r.summary)
        let ends = try store.read { db in try Int64.fetchAll(db, sql: "SELECT end_ps FROM serve_steps WHERE serve_id = ? ORDER BY step", arguments: [id]) }
        #expect(ends == r.steps.map(\.end.picos))
        let tpot = try store.read { db in try Double.fetchOne(db, sql: "SELECT MAX(tpot_us) FROM serve_requests_us WHERE serve_id = ?", arguments: [id]) }
        #expect(tpot == r.requests.compactMap(\.tpot).max()!.micros)
    }

    @Test("CSV exports have one row per step, rank-step and request")
    func csv() throws {
        let (r, _) = try Self.result()
        #expect(ServingExport.stepsCSV(r).split(separator: "\n").count == r.steps.count + 1)
        #expect(ServingExport.rankStepsCSV(r).split(separator: "\n").count == r.rankSteps.count + 1)
        let requests = ServingExport.requestsCSV(r).split(separator: "\n")
        #expect(requests.count == r.requests.count + 1)
        #expect(requests[0].split(separator: ",").count == requests[1].split(separator: ",", omittingEmptySubsequences: false).count)
        let svg = ServingPlot.single(r, title: "t")
        #expect(svg.contains("<polyline") && svg.hasSuffix("</svg>\n"))
    }

    @Test("db merge copies serving runs with every row under new ids, and skips them the second time")
    func merge() throws {
        let (r, s) = try Self.result()
        let source = try temporaryDatabasePath()
        let store = try RunStore(path: source)
        let source1 = RunSource(scenarioPath: "serve-store.yaml", scenarioText: "")
        try store.saveServing(r, scenario: s, source: source1, createdAt: Date(timeIntervalSince1970: 1_800_000_000))
        try store.saveServing(r, scenario: s, source: source1, createdAt: Date(timeIntervalSince1970: 1_800_000_001))
        try store.close()
        // The target already holds one serving run of its own: the copies get ids 2 and 3.
        let target = try temporaryDatabasePath()
        let own = try RunStore(path: target)
        try own.saveServing(r, scenario: s, source: source1, createdAt: Date(timeIntervalSince1970: 1_700_000_000))
        try own.close()
        let first = try RunStore.merge(into: target, from: [source])
        #expect(first.map(\.newServingIDs) == [[2, 3]] && first.map(\.skippedServing) == [0])
        let merged = try RunStore(path: target, mode: .read)
        for id: Int64 in [2, 3] {
            #expect(try merged.servingRowCount("serve_steps", serveID: id) == r.steps.count)
            #expect(try merged.servingRowCount("serve_rank_steps", serveID: id) == r.rankSteps.count)
            #expect(try merged.servingRowCount("serve_requests", serveID: id) == r.requests.count)
        }
        let ends = try merged.read { db in try Int64.fetchAll(db, sql: "SELECT end_ps FROM serve_steps WHERE serve_id = 3 ORDER BY step") }
        #expect(ends == r.steps.map(\.end.picos))
        #expect(try merged.servingRuns().map(\.summaryJSON).allSatisfy { try JSONDecoder().decode(ServingSummary.self, from: Data($0.utf8)) == r.summary })
        try merged.close()
        let again = try RunStore.merge(into: target, from: [source])
        #expect(again.map(\.newServingIDs) == [[]] && again.map(\.skippedServing) == [2])
    }
}
