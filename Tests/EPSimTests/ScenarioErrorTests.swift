import Foundation
import Testing

@testable import EPSim

@Suite("Scenario files: malformed input is refused with a precise message")
struct ScenarioErrorTests {
    static let minimal = "cluster: {ranks: 4}\nmodel: {experts: 8, top_k: 2}\n"

    static let cases: [(yaml: String, code: ScenarioError.Code, keyPath: String, fragment: String)] = [
        (
            "cluster: {ranks: 4, gpu_per_node: 8}\n", .unknownKey, "cluster.gpu_per_node",
            "unknown key \"gpu_per_node\"; allowed here: gpus_per_node, ranks, sms_per_gpu"
        ),
        ("cluster: {ranks: four}\n", .wrongType, "cluster.ranks", "expected a number of ranks in 1...8192, found \"four\""),
        ("cluster: {ranks: \"4\"}\n", .wrongType, "cluster.ranks", "found \"4\""),
        (
            minimal + "workload: {tokens_per_rank: [1, 2, 3, -4]}\n", .outOfRange, "workload.tokens_per_rank[3]",
            "expected a non-negative number of tokens in 0...1048576, found -4"
        ),
        (
            minimal + "workload: {tokens_per_rank: [1, 2, 3]}\n", .wrongLength, "workload.tokens_per_rank",
            "expected one value per rank (4 values) or a single value, found a list of 3"
        ),
        (minimal + "costs: {attn1_us: [1, 2, .inf, 4]}\n", .outOfRange, "costs.attn1_us[2]", "non-finite value .inf"),
        (minimal + "costs: {attn1_us: .nan}\n", .outOfRange, "costs.attn1_us", "non-finite"),
        (minimal + "costs: {gemm_us: -3}\n", .outOfRange, "costs.gemm_us", "expected a duration in microseconds in 0...1000000000, found -3"),
        (minimal + "network: {rdma: {bandwidth_gbps: 0}}\n", .outOfRange, "network.rdma.bandwidth_gbps", "expected a bandwidth in GB/s"),
        ("cluster: {ranks: 3}\nmodel: {experts: 8}\n", .inconsistent, "model.experts", "model.experts (8) must be divisible by cluster.ranks (3)"),
        ("cluster: {ranks: 4}\nmodel: {experts: 8, top_k: 9}\n", .inconsistent, "model.top_k", "top_k (9) must not exceed model.experts (8)"),
        ("cluster: {ranks: 1000000000}\n", .outOfRange, "cluster.ranks", "expected a number of ranks in 1...8192, found 1000000000"),
        ("model: {experts: 8}\n", .missingKey, "cluster", "missing; expected a mapping with at least `ranks`"),
        (minimal + "schedule: tbo\n", .outOfRange, "schedule", "expected one of none, deepseek-decode, deepseek-prefill, sbo, found \"tbo\""),
        ("cluster: {ranks: 4}\nmodel: {hidden: 100}\n", .outOfRange, "model.hidden", "expected an integer in 128...65536, found 100"),
        ("cluster: {ranks: 4}\nmodel: {hidden: 7000, experts: 8}\n", .outOfRange, "model.hidden", "multiple of 128"),
        ("cluster: {ranks: 2}\nmodel: {experts: 4, top_k: 2, placement: [0, 0, 0, 0]}\n", .inconsistent, "model.placement", "rank 1 hosts no expert"),
        ("cluster: {ranks: 2}\nmodel: {experts: 4, top_k: 2, placement: [0, 1, 2, 0]}\n", .outOfRange, "model.placement[2]", "expected a rank in 0...1"),
        ("cluster: {ranks: 8, gpus_per_node: 8}\nnetwork: {nics_per_node: 3}\n", .inconsistent, "network.nics_per_node", "must divide gpus_per_node 8"),
        (
            "cluster: {ranks: 2}\nmodel: {experts: 16, top_k: 2, moe_layers: 1024}\nschedule: {body: " + String(repeating: "BARRIER ", count: 1000)
                + "ATTN0 DISPATCH MLP COMBINE}\n", .invalidSchedule, "schedule", "expands to 1028096 kernels per step"
        ),
        ("cluster: {ranks: 8, gpus_per_node: 4}\nnetwork: {nics_per_node: 8}\n", .outOfRange, "network.nics_per_node", "1 to gpus_per_node"),
        ("cluster: {ranks: 2}\ncluster: {ranks: 3}\n", .inconsistent, "cluster", "key given twice"),
        ("cluster: [ranks, 2]\n", .wrongType, "cluster", "expected a mapping of keys, found a list"),
        ("cluster: {ranks: 2\n", .syntax, "", "YAML"),
        ("", .syntax, "", "the file is empty"),
        (minimal + "network: {nvlink_for_ll: maybe}\n", .wrongType, "network.nvlink_for_ll", "expected true or false"),
        // The limits of network v2, under network: and as their hardware twins (each with its
        // own unit and range), and numbers in hexadecimal, which the integer keys refuse too.
        (minimal + "network: {rdma: {message_rate_mps: 0}}\n", .outOfRange, "network.rdma.message_rate_mps", "expected a message rate in millions per second (or infinite)"),
        (minimal + "network: {nvlink: {ingress_gbps: 0x10}}\n", .wrongType, "network.nvlink.ingress_gbps", "found \"0x10\""),
        (minimal + "network: {rdma: {message_rate_mps: 0x1p4}}\n", .wrongType, "network.rdma.message_rate_mps", "found \"0x1p4\""),
        (minimal + "costs: {attn1_us: 0x10}\n", .wrongType, "costs.attn1_us", "found \"0x10\""),
        (
            minimal + "hardware: {preset: h800, nic_message_rate_mps: -1}\n", .outOfRange, "hardware.nic_message_rate_mps",
            "expected a message rate in millions per second (or infinite) in 1e-06...1000000000, found -1"
        ),
        (
            minimal + "hardware: {preset: h800, nvlink_ingress_gbps: 1e9}\n", .outOfRange, "hardware.nvlink_ingress_gbps",
            "expected a bandwidth in GB/s (or infinite) in 0.001...10000000, found 1e9"
        ),
    ]

    @Test("each malformed input gets its specific error", arguments: cases.indices)
    func malformed(_ i: Int) {
        let c = Self.cases[i]
        do {
            _ = try Scenario.parse(yaml: c.yaml, file: "bad.yaml")
            Issue.record("accepted: \(c.yaml)")
        } catch let error as ScenarioError {
            #expect(error.code == c.code, "\(error)")
            #expect(error.keyPath == c.keyPath, "\(error)")
            #expect(error.description.contains(c.fragment), "\(error)")
            #expect(error.description.hasPrefix("bad.yaml"), "names the file: \(error)")
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
    }

    @Test("decimal numbers in every form still read, under network: and as hardware twins")
    func decimalForms() throws {
        for (text, value) in [("16", 16.0), ("+16", 16), ("1_6", 16), ("1.6e1", 16), (".5", 0.5), ("5.", 5), ("infinite", .infinity)] {
            let s = try Scenario.parse(
                yaml: Self.minimal + "hardware: {preset: h800, nic_message_rate_mps: \(text)}\nnetwork: {nvlink: {ingress_gbps: \(text)}}\n", file: "ok.yaml")
            #expect(s.network.rdmaMessageRateMps == value, "\(text)")
            #expect(s.network.nvlinkIngressGBps == value, "\(text)")
        }
    }

    @Test("errors carry the line and column of the offending value")
    func lineAndColumn() {
        let yaml = "cluster:\n  ranks: 2\nworkload:\n  tokens_per_rank: [1, -2]\n"
        do {
            _ = try Scenario.parse(yaml: yaml, file: "x.yaml")
            Issue.record("accepted")
        } catch let error as ScenarioError {
            #expect(error.line == 4)
            #expect(error.column == 24)
            #expect(error.description.hasPrefix("x.yaml:4:24: workload.tokens_per_rank[1]:"))
        } catch { Issue.record("\(error)") }
    }

    @Test("a missing file is a scenario error naming it")
    func missingFile() {
        #expect(throws: ScenarioError.self) { try Scenario.load(path: "/nonexistent/none.yaml") }
    }

    @Test("a two-rank thought experiment needs only a few lines; defaults fill the rest")
    func defaults() throws {
        let s = try Scenario.parse(yaml: "cluster: {ranks: 2}\n", file: "min.yaml", defaultName: "min")
        #expect(s.name == "min")
        #expect(s.model.experts == 256 && s.model.topK == 8 && s.model.hidden == 7168)
        #expect(s.model.dispatchMessageBytes == 7408)
        #expect(s.model.combineMessageBytes == 14336)
        #expect(s.workload.tokensPerRank == [128, 128])
        #expect(s.schedule == ScheduleSpec.preset("none") && s.steps == 1)
        var bf16 = s.model
        bf16.dispatchPrecision = .bf16
        #expect(bf16.dispatchMessageBytes == 14352)
    }
}

@Suite("Durations too large for simulated time")
struct TimeOverflowTests {
    @Test("durations inside the documented ranges that overflow time stop the run with time-overflow, never a trap")
    func horizon() throws {
        let s = try Scenario.parse(yaml: "cluster: {ranks: 2}\ncosts: {gemm_us: 1000000000}\nsteps: 10000\n", file: "big.yaml")
        #expect {
            _ = try Simulation.run(s, options: .init(timeline: .summary))
        } throws: { error in
            guard let e = error as? SimulationError else { return false }
            return e.code == .timeOverflow && e.message.contains("53 days") && e.message.contains("costs.gemm_us")
        }
        // Every per-message cost times every message: saturates, then stops cleanly.
        let perMessage = try Scenario.parse(
            yaml: "cluster: {ranks: 2}\nworkload: {tokens_per_rank: 1048576}\nmodel: {experts: 64, top_k: 8}\ncosts: {dispatch_send: {per_message_us: 1000000000}}\n",
            file: "pm.yaml")
        #expect(throws: SimulationError.self) { _ = try Simulation.run(perMessage, options: .init(timeline: .summary)) }
    }

    @Test("a measured table row beyond the duration range is refused when read, naming file and line")
    func tableRow() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "kind,tokens,us\nMLP,0,1e15\n".write(to: dir.appendingPathComponent("t.csv"), atomically: true, encoding: .utf8)
        try "cluster: {ranks: 2}\ncosts: {table: t.csv}\n".write(to: dir.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
        #expect {
            _ = try Scenario.load(path: dir.appendingPathComponent("s.yaml").path)
        } throws: { error in
            guard let e = error as? ScenarioError else { return false }
            return e.line == 2 && e.message.contains("0...1000000000")
        }
    }
}

@Suite("Sizes are checked before they cost")
struct InputSizeTests {
    @Test("a scenario file over 8 MiB is refused while it is read, naming its size; a large trace is read quickly")
    func sizes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("size-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // The issue's shape: one ten-million-entry list (here 9 MB of it).
        var big = "cluster: {ranks: 2}\nworkload: {tokens_per_rank: ["
        big += String(repeating: "1, ", count: 3_000_000) + "1]}\n"
        let path = dir.appendingPathComponent("big.yaml").path
        try big.write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try Scenario.load(path: path) } throws: { "\($0)".contains("is larger than 8 MiB") }
        // A routing trace of 64 ranks x 4096 tokens (10 MB) reads in well under the old rate
        // of 4 s per 20 MB (not timed here: its content is checked).
        var trace = "layer,rank,token,e0,e1,e2,e3,e4,e5,e6,e7\n"
        for r in 0..<64 { for t in 0..<4096 { trace += ",\(r),\(t),\((t % 32) * 8),\((t % 32) * 8 + 1),\((t % 32) * 8 + 2),\((t % 32) * 8 + 3),\((t % 32) * 8 + 4),\((t % 32) * 8 + 5),\((t % 32) * 8 + 6),\((t % 32) * 8 + 7)\r\n" } }
        let parsed = try RoutingTrace.parse(trace, file: "t.csv", ranks: 64, experts: 256, topK: 8, moeLayers: 3)
        #expect(parsed.tokensPerRank == Array(repeating: 4096, count: 64))
        #expect(Array(parsed.experts(layer: 2, rank: 5, token: 33)) == [8, 9, 10, 11, 12, 13, 14, 15])
    }
}
