import EPSim
import Foundation
import Testing

@testable import EPSimStore

@Suite("Scenario content hash")
struct ScenarioHashTests {
    static let base = """
        name: hash-test
        cluster: {ranks: 4, gpus_per_node: 2}
        model: {experts: 16, top_k: 4, moe_layers: 2}
        workload: {tokens_per_rank: [64, 16, 32, 8], routing: uniform, seed: 9}
        schedule: deepseek-decode
        costs: {attn0_us: 30, attn1_us: [60, 70, 80, 200], gemm_us: 50}
        """

    static func hash(_ yaml: String) throws -> String { try Scenario.parse(yaml: yaml, file: "hash.yaml").contentHash }

    @Test("the same scenario written differently hashes the same")
    func equalContent() throws {
        let reordered = """
            # Comments, key order, block style, number spelling, a default written out,
            # another name and a description do not change the content.
            costs:
              gemm_us: 50.0
              attn1_us: [60, 70.0, 80, 2e2]
              attn0_us: 30
            schedule: deepseek-decode
            workload:
              seed: 9
              routing: uniform
              tokens_per_rank:    [64, 16, 32, 8]
            model:
              moe_layers: 2
              top_k: 4
              experts: 16
            cluster:
              gpus_per_node: 2
              ranks: 4
            steps: 1
            name: another-name
            description: the same experiment, written out differently
            """
        #expect(try Self.hash(reordered) == Self.hash(Self.base))
        let h = try Self.hash(Self.base)
        #expect(h.count == 64 && h.allSatisfy { "0123456789abcdef".contains($0) })
    }

    @Test(
        "changing anything that reaches the simulation changes the hash",
        arguments: [
            ("seed: 9", "seed: 10"), ("attn1_us: [60, 70, 80, 200]", "attn1_us: [60, 70, 80, 201]"), ("gemm_us: 50", "gemm_us: 50.000001"),
            ("ranks: 4, gpus_per_node: 2}", "ranks: 4, gpus_per_node: 4}"), ("schedule: deepseek-decode", "schedule: none"),
            ("routing: uniform", "routing: balanced"), ("moe_layers: 2", "moe_layers: 3"), ("[64, 16, 32, 8]", "[64, 16, 8, 32]"),
        ])
    func differentContent(_ change: (String, String)) throws {
        let changed = Self.base.replacingOccurrences(of: change.0, with: change.1)
        #expect(changed != Self.base)
        #expect(try Self.hash(changed) != Self.hash(Self.base))
    }

    @Test("ranks change the hash (with a batch per rank)")
    func ranks() throws {
        let eight = Self.base.replacingOccurrences(of: "ranks: 4", with: "ranks: 8")
            .replacingOccurrences(of: "[64, 16, 32, 8]", with: "[64, 16, 32, 8, 64, 16, 32, 8]")
            .replacingOccurrences(of: "[60, 70, 80, 200]", with: "[60, 70, 80, 200, 60, 70, 80, 200]")
        #expect(try Self.hash(eight) != Self.hash(Self.base))
    }

    @Test("a schedule's name is a label: the same kernels under another name hash the same")
    func scheduleName() throws {
        let none = Self.base.replacingOccurrences(of: "schedule: deepseek-decode", with: "schedule: none")
        let mine = Self.base.replacingOccurrences(
            of: "schedule: deepseek-decode", with: "schedule: {name: mine, body: ATTN0 ATTN1 SHARED DISPATCH MLP COMBINE}")
        #expect(try Self.hash(mine) == Self.hash(none))
    }

    @Test("the canonical form is compact JSON with sorted keys, kernels by name, without name or description; its hash is pinned")
    func canonicalForm() throws {
        let s = try Scenario.parse(yaml: Self.base, file: "hash.yaml")
        let json = s.canonicalJSON
        #expect(!json.contains("hash-test") && !json.contains(" "))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["name"] == nil && object["cluster"] != nil && object["costs"] != nil)
        let keys = json.dropFirst().split(separator: ",").compactMap { $0.hasPrefix("\"") ? $0.split(separator: "\"")[0] : nil }
        #expect(keys.first == "cluster")
        #expect(((object["workload"] as? [String: Any])?["seed"] as? Int) == 9)
        // A pinned value: the hash of this scenario changes only when its canonical form does
        // (a renamed Swift property, a new field with a non-zero default); if it must change,
        // say so in docs/database.md and the commit.
        #expect(s.contentHash == "e1e38d1bce4785bd5fb38a328c0c8b71325d442b9bf1aaf962bfc0769c2d9cd5")
        #expect(json.contains("\"body\":[{\"kind\":\"SHARED\",\"microBatch\":\"A\",\"stream\":\"compute\"}"))
    }
}
