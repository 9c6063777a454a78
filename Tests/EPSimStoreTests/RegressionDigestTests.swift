import EPSim
import EPSimStore
import Foundation
import Testing

/// Optimisations must not change results: these scenarios' full timelines, exported as
/// CSV, must stay byte-identical. A digest changes only when the model itself changes, and
/// then the new digest belongs in the same commit as the model change and its docs.
@Suite("Regression digests of timeline CSVs")
struct RegressionDigestTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func fnv1a(_ text: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        return String(h, radix: 16)
    }

    static let cases: [(file: String, overrides: [String], digest: String)] = [
        ("Scenarios/balanced.yaml", [], "dcd230f2ee1879a4"),
        ("Scenarios/batch-imbalance-tbo.yaml", [], "98c1ca034f10a148"),
        ("Scenarios/decode-combine-exposed.yaml", [], "d68b450949b7cf6"),
        ("Scenarios/batch-imbalance-ep16.yaml", ["workload.routing=uniform"], "ec42d3b23d553ccb"),
        ("Scenarios/bench/deepseek-v3-prefill-ep32.yaml", ["cluster.ranks=8", "model.moe_layers=2", "workload.tokens_per_rank=256"], "3d1e7ca048a1f53e"),
        ("Scenarios/bench/deepseek-v3-decode-ep64.yaml", ["cluster.ranks=16", "model.moe_layers=3", "steps=2"], "ce6ebe5aac762279"),
    ]

    @Test("timeline CSVs are byte-identical to the recorded ones", arguments: cases.indices)
    func digest(_ i: Int) throws {
        let c = Self.cases[i]
        let overrides = c.overrides.map { s -> Override in
            let eq = s.firstIndex(of: "=")!
            return Override(keyPath: String(s[..<eq]), value: String(s[s.index(after: eq)...]))
        }
        let scenario = try Scenario.load(path: Self.root.appendingPathComponent(c.file).path, overrides: overrides)
        let csv = TimelineExport.csv(try Simulation.run(scenario).kernels, runID: nil)
        let got = Self.fnv1a(csv)
        #expect(got == c.digest, "\(c.file) \(c.overrides): digest \(got)")
    }
}
