import EventCore
import Foundation
import Testing

@testable import EPSim

/// The measurement files, the fits from them, and the simulation against them.
@Suite("Calibration from measurements")
struct MeasuredCalibrationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let measurements = root.appendingPathComponent("calibration/measurements").path
    static let sittingA = measurements + "/2026-11-29-h200x2-a"

    /// A scratch folder holding `files`.
    static func folder(_ files: [String: String]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-meas-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        return dir.path
    }

    static func harness() throws -> [DeepEPMeasurement] {
        try ValidationPage.shippedMeasurements(root: measurements).filter { $0.group != "deepep-log" && $0.ranks <= 2 }
    }

    @Test("the harness's CSV is read whole: every case and rank, with its recorded routing")
    func readsHarnessCSV() throws {
        let rows = try MeasurementReader.read(path: Self.sittingA + "/ll.csv")
        #expect(rows.count == 114)
        #expect(Set(rows.map(\.caseName)).count == 57)
        for r in rows {
            let routing = try #require(r.routing)
            #expect(routing.experts.map { $0.count / r.topK } == r.tokensByRank)
        }
        let t128 = rows.first { $0.caseName == "balanced-t128" && $0.rank == 0 }!
        #expect(t128.mode == .fused && t128.dispatch!.p50 == 25.264 && t128.combine!.p50 == 41.887)
        #expect(t128.dispatch!.p10 <= t128.dispatch!.p50 && t128.dispatch!.p50 <= t128.dispatch!.p90)
        let settled = rows.first { $0.caseName == "balanced-hook-settled-t1" }!
        #expect(settled.mode == .hookSettled && settled.dispatch == nil && settled.dispatchRecv != nil)
        // Bytes conserved: what the routing sends from a rank is what the row says it sent.
        let counts = rows.first { $0.caseName == "unequal-t128-32" && $0.rank == 1 }!
        #expect(counts.routing!.experts[1].count == 32 * 8)
    }

    @Test("DeepEP's own log lines are read: fused and hook-mode rows per rank")
    func readsDeepEPLog() throws {
        var settings = MeasurementReader.LogSettings()
        settings.experts = 256
        let rows = try MeasurementReader.read(path: Self.sittingA + "/deepep-test-t128.log", log: settings)
        #expect(rows.count == 4)
        let fused = rows.first { $0.mode == .fused && $0.rank == 0 }!
        #expect(fused.dispatch!.p50 == 28.11 && fused.combine!.p50 == 40.98 && fused.ranks == 2 && fused.tokensByRank == [128, 128])
        let hook = rows.first { $0.mode == .hookSettled && $0.rank == 1 }!
        #expect(hook.dispatchSend!.p50 == 19.32 && hook.dispatchRecv!.p50 == 8.41 && hook.combineSend!.p50 == 33.83 && hook.combineRecv!.p50 == 9.99)
    }

    static let header = try! String(contentsOfFile: sittingA + "/ll.csv", encoding: .utf8).split(whereSeparator: \.isNewline).first.map(String.init)!
    static let goodLine = try! String(contentsOfFile: sittingA + "/ll.csv", encoding: .utf8).split(whereSeparator: \.isNewline)[1...2].joined(separator: "\n")
    static let routing = try! String(contentsOfFile: sittingA + "/routing.csv", encoding: .utf8).split(whereSeparator: \.isNewline)
        .filter { $0.hasPrefix("case,") || $0.hasPrefix("balanced-t1,") }.joined(separator: "\n")

    /// `goodLine` with one substitution, under the header.
    static func edited(_ from: String, _ to: String) -> String { header + "\n" + goodLine.replacingOccurrences(of: from, with: to) }

    static let malformedCases: [(String, String, String)] = {
        var c: [(String, String, String)] = []
        c.append(("ll.csv", "case,rank\nx,1,2\n", ":2: expected 2 cells"))
        c.append(("ll.csv", "case,rank\n", "no row below the header"))
        c.append(("ll.csv", edited("12.288", "abc"), ":2: column dispatch_us_p50: expected a non-negative number"))
        c.append(("ll.csv", edited(",fused,", ",fast,"), ":2: mode: expected fused or hook"))
        c.append(("ll.csv", edited(",1/1,", ",1/x,"), ":2: tokens_by_rank"))
        c.append(("ll.csv", edited(",1/1,", ",9223372036854775807/1,"), ":2: tokens_by_rank: expected tokens per rank in 0...1048576"))
        c.append(("ll.csv", edited(",15.249,", ",0.500,"), ":2: combine_start_us_p50 (0.5) is before dispatch_end_us_p50"))
        let first = String(goodLine.split(separator: "\n")[0])
        c.append(("ll.csv", header + "\n" + goodLine + "\n" + first, "is given twice"))
        c.append(("log", "[rank 0] Dispatch bandwidth: 1 GB/s, avg_t=abc us | Combine bandwidth: 2 GB/s, avg_t=3 us\n", ":1: expected \"Dispatch bandwidth"))
        c.append(("log", "[rank 0] Dispatch send/recv time: 1 + x us | Combine send/recv time: 2 + 3 us\n", ":1: expected \"Dispatch send/recv time"))
        c.append(("log", "[rank 1] Dispatch bandwidth: 1 GB/s, avg_t=2 us | Combine bandwidth: 2 GB/s, avg_t=3 us\n", "ranks 0...1 expected"))
        c.append(("log", "hello\n", "no DeepEP low-latency result line"))
        return c
    }()

    @Test("malformed measurement files: a message naming the file and line", arguments: malformedCases)
    func malformed(_ file: String, _ text: String, _ expected: String) throws {
        let dir = try Self.folder(file == "ll.csv" ? ["ll.csv": text, "routing.csv": Self.routing] : [file: text])
        #expect {
            _ = try MeasurementReader.read(path: dir + "/" + file)
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix(dir + "/") && message.contains(expected)
        }
    }

    @Test("ll-run.json: sizes out of range, booleans and unreadable files are refused, naming it")
    func runSettings() throws {
        let csv = "\(Self.header)\n\(Self.goodLine)\n"
        for json in [#"{"top_k": 4611686018427387904}"#, #"{"top_k": true}"#, #"{"hidden": 100}"#, #"{"experts": 255}"#, "not json"] {
            let dir = try Self.folder(["ll.csv": csv, "routing.csv": Self.routing, "ll-run.json": json])
            #expect(throws: MeasurementError.self, "\(json)") { _ = try MeasurementReader.read(path: dir + "/ll.csv") }
        }
        // top_k 4 where the routing has 8 experts a token: the routing's header says so.
        let dir = try Self.folder(["ll.csv": csv, "routing.csv": Self.routing, "ll-run.json": #"{"top_k": 4}"#])
        #expect { _ = try MeasurementReader.read(path: dir + "/ll.csv") } throws: { "\($0)".contains("routing.csv:1: expected the columns case,rank,token,e0...e3") }
    }

    @Test("a case missing a rank's row is left out with a note; lone-CR files and directories are handled")
    func partialCasesAndFiles() throws {
        let lines = Self.goodLine.split(separator: "\n")
        var notes: [String] = []
        let partial = try Self.folder(["ll.csv": "\(Self.header)\n\(lines[0])\n", "routing.csv": Self.routing])
        let left = try MeasurementReader.read(path: partial + "/ll.csv", notes: &notes)
        #expect(left.isEmpty)
        #expect(notes.count == 1 && notes[0].contains("case balanced-t1 left out: rows for ranks [0] only"))
        let cr = try Self.folder(["ll.csv": "\(Self.header)\r\(lines[0])\r\(lines[1])\r", "routing.csv": Self.routing])
        #expect(try MeasurementReader.read(path: cr + "/ll.csv").count == 2)
        #expect { _ = try MeasurementReader.read(path: cr) } throws: { "\($0)".contains("is a directory") }
    }

    @Test("compute.csv: non-positive times, missing or absurd expert counts are refused; no row to fit on is an error")
    func computeErrors() throws {
        let header = "table,name,dtype,kernel,experts,tokens_per_expert,tokens,k,n,kv_length,flops,bytes,us_p50,us_p10,us_p90,reps,note"
        for row in [
            "expert-ffn,routed-experts,fp8,k,2,8,16,7168,2048,,1,1,0,0,0,20,", "expert-ffn,routed-experts,fp8,k,,8,16,7168,2048,,1,1,5,5,5,20,",
            "expert-ffn,routed-experts,fp8,k,2147483647,8,16,7168,2048,,1,1,5,5,5,20,",
        ] {
            let dir = try Self.folder(["compute.csv": header + "\n" + row + "\n"])
            #expect(throws: MeasurementError.self, "\(row)") { _ = try ComputeCalibration.read(path: dir + "/compute.csv") }
        }
        let dir = try Self.folder(["compute.csv": header + "\nexpert-ffn,routed-experts,fp8,k,2,8,16,7168,2048,,1,1,100,99,101,20,\n"])
        let rows = ComputeCalibration.expertRows(try ComputeCalibration.read(path: dir + "/compute.csv"))
        #expect(throws: MeasurementError.self) { _ = try ComputeCalibration.fit(rows, start: .h200) }
    }

    @Test("a CSV without its routing, or with routing that disagrees, is refused")
    func routingChecked() throws {
        let csv = "\(Self.header)\n\(Self.goodLine)\n"
        let noRouting = try Self.folder(["ll.csv": csv])
        #expect(throws: MeasurementError.self) { _ = try MeasurementReader.read(path: noRouting + "/ll.csv") }
        let twice = Self.routing.replacingOccurrences(of: "balanced-t1,0,0,", with: "balanced-t1,0,0,7,7,")
        let bad = try Self.folder(["ll.csv": csv, "routing.csv": twice])
        #expect {
            _ = try MeasurementReader.read(path: bad + "/ll.csv")
        } throws: { "\($0)".contains("routing.csv:") }
    }

    /// The fit is deterministic and gives the shipped preset from the shipped measurements.
    @Test("fitting the h200 preset on the shipped measurements reproduces it exactly")
    func fitReproducesPreset() throws {
        let (fitted, rows) = try MeasuredCalibration.fit(try Self.harness(), on: ValidationPage.h200FitSelection, preset: .h200)
        for p in MeasuredCalibration.fitParameters {
            #expect(fitted[keyPath: p.field] == Hardware.h200[keyPath: p.field], "\(p.name)")
        }
        #expect(rows.contains { $0.fitted } && rows.contains { !$0.fitted })
    }

    /// The issue's targets (held-out mean error of per-rank dispatch and combine at most 10%,
    /// end-to-end at most 5%), checked at the figures measured (8.6%, 6.6%, 4.3%) plus half a
    /// point, so that a change that makes the model worse fails here.
    @Test("held-out rows: per-rank dispatch, combine and end-to-end errors as stated")
    func heldOutErrors() throws {
        let rows = try MeasuredCalibration.compare(try Self.harness(), hardware: .h200, fitOn: ValidationPage.h200FitSelection)
        let held = MeasuredCalibration.summarize(rows.filter { !$0.fitted })
        func mean(_ m: MeasuredCalibration.Metric) -> Double { held.first { $0.metric == m }!.meanAbsError }
        #expect(mean(.dispatch) <= 0.091)
        #expect(mean(.combine) <= 0.071)
        #expect(mean(.endToEnd) <= 0.048)
        #expect(held.first { $0.metric == .dispatch }!.rows == 104)
    }

    @Test("the h800 links fitted to DeepEP's table reproduce the preset exactly")
    func publishedFitReproducesPreset() throws {
        let (fitted, _) = try DeepEPCalibration.fit(directory: Self.root.appendingPathComponent("Scenarios/calibration").path)
        #expect(fitted.nvlinkGBps == Hardware.h800.nvlinkGBps && fitted.nvlinkLatencyMicros == Hardware.h800.nvlinkLatencyMicros)
        #expect(fitted.rdmaGBps == Hardware.h800.rdmaGBps && fitted.rdmaLatencyMicros == Hardware.h800.rdmaLatencyMicros)
    }

    @Test("the PyTorch grouped-FFN fit reproduces its shipped values; held-out points within 10%")
    func computeFit() throws {
        let rows = ComputeCalibration.expertRows(
            try ComputeCalibration.read(path: Self.measurements + "/2026-11-29-h200x2-b/compute/compute.csv"))
        #expect(rows.count == 60)
        var start = ComputeCalibration.pytorchH200
        (start.expertFFNFixedMicros, start.expertFFNStreamGBps, start.expertFFNTFLOPS) = (0, 0, 0)
        let fitted = try ComputeCalibration.fit(rows, start: start)
        let shipped = ComputeCalibration.pytorchH200
        #expect(fitted.expertFFNFixedMicros == shipped.expertFFNFixedMicros)
        #expect(fitted.expertFFNStreamGBps == shipped.expertFFNStreamGBps)
        #expect(fitted.expertFFNTFLOPS == shipped.expertFFNTFLOPS)
        for r in rows where !ComputeCalibration.isFitRow(r) {
            let e = ComputeCalibration.predicted(shipped, experts: r.experts, tokensPerExpert: r.tokensPerExpert) / r.micros - 1
            #expect(abs(e) < 0.10, "\(r.experts) experts x \(r.tokensPerExpert): \(e)")
        }
    }

    @Test("the shipped tables are the measured SHARED and DENSE times, and a scenario prices kernels from them")
    func tables() throws {
        let all = try ComputeCalibration.read(path: Self.measurements + "/2026-11-29-h200x2-b/compute/compute.csv")
        for dtype in ["fp8", "bf16"] {
            let shipped = try String(contentsOfFile: Self.root.appendingPathComponent("Scenarios/tables/h200-shared-dense-\(dtype).csv").path, encoding: .utf8)
            #expect(shipped == ComputeCalibration.table(all, dtype: dtype), "regenerate: epsim calibrate --compute ... --table ... --table-dtype \(dtype)")
        }
        let s = try Scenario.parse(
            yaml: "cluster: {ranks: 1}\nmodel: {preset: deepseek-v3, moe_layers: 1}\nworkload: {tokens_per_rank: 128}\ncosts: {table: Scenarios/tables/h200-shared-dense-bf16.csv}\n",
            file: Self.root.appendingPathComponent("x.yaml").path)
        let shared = try Simulation.run(s).kernels.first { $0.kind == .shared }!
        let measured = all.first { $0.name == "shared-expert-ffn" && $0.dtype == "bf16" && $0.tokens == 128 }!.micros
        #expect(shared.duration == SimTime(micros: measured))
    }

    @Test("docs/validation.md is what epsim calibrate --markdown writes")
    func validationPageCurrent() throws {
        let page = try ValidationPage.render(
            scenarios: Self.root.appendingPathComponent("Scenarios/calibration").path, measurements: Self.measurements)
        let stored = try String(contentsOf: Self.root.appendingPathComponent("docs/validation.md"), encoding: .utf8)
        #expect(page == stored, "regenerate it: swift run -c release epsim calibrate --markdown docs/validation.md")
    }
}

@Suite("One mapping of hardware parameters")
struct HardwareParameterTests {
    @Test("a fit's values applied as sweep overrides give back exactly the fitted hardware")
    func overridesRoundTrip() throws {
        var fitted = Hardware.h200
        for (i, p) in (MeasuredCalibration.fitParameters + ComputeCalibration.fitParameters).enumerated() {
            // A value inside the search range, at the fit's published precision.
            let v = p.range.lowerBound + (p.range.upperBound - p.range.lowerBound) * Double(i + 1) / 23
            fitted[keyPath: p.field] = MeasuredCalibration.significant(v)
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hw-\(UUID().uuidString).yaml").path
        try "hardware: h200\ncluster: {ranks: 2}\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let all = MeasuredCalibration.fitParameters + ComputeCalibration.fitParameters
        let loaded = try Scenario.load(path: path, overrides: all.overrides(from: fitted)).costs.hardware
        for p in all { #expect(loaded[keyPath: p.field] == fitted[keyPath: p.field], "\(p.name)") }
        // And the YAML block the fit prints reads back the same.
        let block = MeasuredCalibration.yamlBlock(fitted, preset: "h200")
        let parsed = try Scenario.parse(yaml: block + "cluster: {ranks: 2}\n", file: "fit.yaml").costs.hardware
        for p in MeasuredCalibration.fitParameters { #expect(parsed[keyPath: p.field] == fitted[keyPath: p.field], "\(p.name)") }
    }

    @Test("every hardware key a scenario accepts is in the one table, and nothing else is")
    func tableIsComplete() throws {
        for p in Hardware.parameters {
            let yaml = "hardware: {preset: h800, \(p.key): \(p.range.upperBound)}\ncluster: {ranks: 2}\n"
            #expect(try Scenario.parse(yaml: yaml, file: "t.yaml").costs.hardware[keyPath: p.field] == p.range.upperBound)
        }
        #expect(throws: ScenarioError.self) { try Scenario.parse(yaml: "hardware: {preset: h800, nvlink_gbs: 3}\ncluster: {ranks: 2}\n", file: "t.yaml") }
        #expect(Set(Hardware.parameters.map(\.key)).count == Hardware.parameters.count)
    }
}

@Suite("Measurement items")
struct MeasurementItemTests {
    @Test("a log's settings after its last colon; a plain path keeps the defaults; bad settings name the item")
    func logSettings() throws {
        let base = MeasurementReader.LogSettings()
        let (plain, same) = try base.applying("C:/runs/ll.csv")
        #expect(plain == "C:/runs/ll.csv" && same.tokens == base.tokens)
        let (path, s) = try base.applying("logs/a:b.txt:tokens=32,experts=64,hidden=4096,top_k=6,gpus_per_node=2")
        #expect(path == "logs/a:b.txt")
        let values: [Int] = [s.tokens, s.experts, s.hidden, s.topK, s.gpusPerNode]
        #expect(values == [32, 64, 4096, 6, 2])
        for (item, message) in [
            ("x.txt:tokens=abc", "key=integer"), ("x.txt:hidden=100", "hidden=100 is not a log setting"),
            ("x.txt:experts=4,top_k=8", "top_k must be at most experts"), ("x.txt:warps=4", "warps=4"),
        ] {
            do {
                _ = try base.applying(item)
                Issue.record("accepted \(item)")
            } catch let error as MeasurementError {
                #expect(error.file == item)
                #expect(error.message.contains(message), "\(error.message)")
            }
        }
    }
}
