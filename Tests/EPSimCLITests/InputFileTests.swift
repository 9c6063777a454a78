import Foundation
import Testing

/// Scenario files that are not plain UTF-8 regular files: each is read, or refused with a
/// message naming the file and saying what is wrong (exit 65), never an opaque system
/// error.
@Suite("Scenario files of every kind, end to end")
struct InputFileTests {
    static let balanced = try! String(contentsOfFile: CLI.repoRoot.path + "/Scenarios/balanced.yaml", encoding: .utf8)

    static func refused() throws -> [(path: String, expected: String)] {
        [
            (FileManager.default.temporaryDirectory.path, "is a directory; expected a scenario YAML file"),
            (try CLI.temporaryFile(bytes: Array("cluster: {ranks: 2}\nname: \"caf".utf8) + [0xE9, 0x22, 0x0A]), ":2:11: is not UTF-8 text"),
            (try CLI.temporaryFile(bytes: [0xFF, 0xFE] + Array("cluster".utf8).flatMap { [$0, 0] }), "is UTF-16 text; save it as UTF-8"),
            ("/dev/null", "the file is empty; expected a mapping with at least cluster.ranks"),
            ("Scenarios/no-such-file.yaml", "Scenarios/no-such-file.yaml: cannot read the file: it does not exist"),
            ("Scenarios/balanced.yaml/inside", "cannot read the file: a part of the path is not a folder"),
            (try CLI.temporaryFile("cluster: {ranks: 2, <<: 3}\n"), "cluster.<<: a merge key takes a mapping or a list of mappings"),
        ]
    }

    @Test("a directory, bytes that are not UTF-8, UTF-16, an empty or missing file: exit 65, the file named, what is wrong said")
    func unreadable() throws {
        for (path, expected) in try Self.refused() {
            for command in [["validate", path], ["run", path, "--no-store"], ["sweep", path, "--vary", "steps=1,2", "--no-store"], ["explain", path]] {
                let out = try CLI.run(command)
                #expect(out.status == 65, "\(command): \(out.stderr)")
                #expect(out.stderr.hasPrefix("error: \(path)") && out.stderr.contains(expected), "\(command): \(out.stderr)")
                #expect(!out.stderr.contains("NSCocoaErrorDomain") && !out.stderr.contains("permission"), "\(out.stderr)")
                #expect(out.stdout.isEmpty)
            }
        }
    }

    @Test("a process substitution <(cat f) reads as the file, once for every point of a sweep")
    func processSubstitution() throws {
        let validate = try CLI.shell("\"$EPSIM\" validate <(cat Scenarios/balanced.yaml)")
        #expect(validate.status == 0, "\(validate.stderr)")
        #expect(validate.stdout.contains("/dev/fd/") && validate.stdout.contains(": ok (2 ranks"))
        let piped = try CLI.shell("\"$EPSIM\" run <(cat Scenarios/balanced.yaml) --no-store --format json")
        let direct = try CLI.run(["run", "Scenarios/balanced.yaml", "--no-store", "--format", "json"])
        #expect(piped.status == 0, "\(piped.stderr)")
        let latency = { (text: String) in (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["step_latency_us"] as? Double }
        #expect(latency(piped.stdout) != nil && latency(piped.stdout) == latency(direct.stdout))
        let sweep = try CLI.shell("\"$EPSIM\" sweep <(cat Scenarios/balanced.yaml) --vary workload.tokens_per_rank=16,32,64 --no-store --format csv")
        #expect(sweep.status == 0, "\(sweep.stderr)")
        #expect(sweep.stdout.split(separator: "\n").count == 4, "every point read the text: \(sweep.stdout)")
    }

    @Test("YAML merge keys are resolved: the mapping's own keys win, then earlier merged mappings")
    func mergeKeys() throws {
        let merged = try CLI.temporaryFile(
            """
            name: balanced
            description: Two ranks, 128 tokens each, equal attention; fixed kernel durations.
            cluster: &cluster {ranks: 2, gpus_per_node: 8}
            model: {experts: 16, top_k: 8}
            workload: {tokens_per_rank: 128}
            network: {model: ideal}
            costs:
              <<: [{attn0_us: 30, attn1_us: 99}, {attn1_us: 1, shared_us: 15, gemm_us: 7}]
              attn1_us: 60
              gemm_us: 50

            """)
        let a = try CLI.run(["run", merged, "--no-store", "--format", "json"])
        let b = try CLI.run(["run", "Scenarios/balanced.yaml", "--no-store", "--format", "json"])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(a.stdout == b.stdout, "the merged file is the balanced scenario")
        // Earlier merged mappings win over later ones: attn0_us 30 (not 1) from the first.
        let order = try CLI.temporaryFile(
            Self.balanced.replacingOccurrences(of: "costs:\n", with: "costs:\n  <<: [{shared_us: 15}, {shared_us: 99}]\n")
                .replacingOccurrences(of: "  shared_us: 15\n", with: ""))
        let c = try CLI.run(["run", order, "--no-store", "--format", "json"])
        #expect(c.status == 0 && c.stdout == b.stdout, "\(c.stderr)")
        // Aliases nested to billions of nodes are refused, not walked.
        var laughs = ["l0: &l0 {<<: {k: 1}, a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1}"]
        for n in 1...9 { laughs.append("l\(n): &l\(n) {" + (0..<10).map { "k\($0): *l\(n - 1)" }.joined(separator: ", ") + "}") }
        let bomb = try CLI.temporaryFile(laughs.joined(separator: "\n") + "\ncluster: {ranks: 2}\n")
        let d = try CLI.run(["validate", bomb])
        #expect(d.status == 65 && d.stderr.contains("\(bomb): the file's aliases expand to more than 1000000 YAML nodes"), "\(d.stderr)")
    }

    @Test("plot --csv reads its CSV as a scenario is read: a directory or a missing file is exit 65 naming it")
    func plotCSV() throws {
        let svg = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-\(UUID().uuidString).svg").path
        let folder = FileManager.default.temporaryDirectory.path
        for (path, expected) in [(folder, "is a directory; expected a CSV file"), ("no-such.csv", "cannot read the file: it does not exist")] {
            let out = try CLI.run(["plot", "--csv", path, "--x", "a", "--y", "b", "--svg", svg])
            #expect(out.status == 65 && out.stderr.contains("error: \(path): \(expected)"), "\(out.stderr)")
        }
        let piped = try CLI.shell("\"$EPSIM\" plot --csv <(printf 'a,b\\n1,2\\n3,4\\n') --x a --y b --svg \(svg)")
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(FileManager.default.fileExists(atPath: svg))
    }
}
