import Foundation

/// What is wrong with a measurement file: the file, the line, what was expected.
///
/// ```
/// calibration/measurements/x/ll.csv:14: column dispatch_us_p50: expected a non-negative number of microseconds, found "abc"
/// ```
public struct MeasurementError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based line, when the fault is on one line.
    public var line: Int?
    public var message: String

    public init(file: String, line: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
}

/// A measured time over a case's trials: median and the 10th and 90th percentiles, µs.
public struct MeasuredTime: Sendable, Equatable {
    public var p50: Double
    public var p10: Double
    public var p90: Double
    public init(p50: Double, p10: Double, p90: Double) {
        self.p50 = p50
        self.p10 = p10
        self.p90 = p90
    }
    public init(_ value: Double) { self.init(p50: value, p10: value, p90: value) }
}

/// How the low-latency kernels ran in a measured case.
public enum MeasuredMode: String, Sendable {
    /// `return_recv_hook=False`: one DISPATCH and one COMBINE kernel (send, grid sync, receive).
    case fused
    /// Hook mode: SEND and RECV kernels apart, the RECV launched right after the SEND.
    case hook
    /// Hook mode with the RECV launched after a long spin: every message has arrived, so
    /// the RECV time is its copy or reduce alone.
    case hookSettled = "hook-settled"
}

/// The routing of a measured case: every token's experts, per rank.
public struct MeasuredRouting: Sendable, Equatable {
    /// `experts[rank]`: `top_k` experts per token, flattened.
    public var experts: [[Int32]]
}

/// One rank of one measured case of DeepEP's low-latency kernels.
///
/// From `calibration/deepep/measure_ll.py`'s `ll.csv` (ranks aligned on the GPU before
/// every trial; medians over trials) or from the lines DeepEP's own
/// `tests/test_low_latency.py` prints (averages over back-to-back runs, ranks aligned once).
public struct DeepEPMeasurement: Sendable {
    /// Where the row came from (file and line), for messages and reports.
    public var source: String
    public var line: Int
    /// The case name, unique within its file; rows of one case share it.
    public var caseName: String
    /// The case's group (`balanced`, `unequal`, `zero`, `routing`, `delay`, or `deepep-log`).
    public var group: String
    public var mode: MeasuredMode
    public var rank: Int
    public var ranks: Int
    public var gpusPerNode: Int
    public var tokensByRank: [Int]
    public var hidden: Int
    public var experts: Int
    public var topK: Int
    /// The recorded routing, or nil for DeepEP's test (uniform random; EPSim samples its own).
    public var routing: MeasuredRouting?
    /// Injected GPU spins on this rank before dispatch and between dispatch and combine
    /// (measured medians), and the spin between each hook-mode SEND and its RECV, µs.
    public var preSpinMicros: Double
    public var midSpinMicros: Double
    public var settleMicros: Double
    /// Per-rank kernel times (fused mode: `dispatch`, `combine`; hook mode: the halves).
    public var dispatch: MeasuredTime?
    public var combine: MeasuredTime?
    public var dispatchSend: MeasuredTime?
    public var dispatchRecv: MeasuredTime?
    public var combineSend: MeasuredTime?
    public var combineRecv: MeasuredTime?
    /// From the ranks' alignment (end of the all-reduce) to the end of the combine.
    public var endToEnd: MeasuredTime?
    /// The idle time between the dispatch's last kernel and the combine's first (the
    /// stream's launch gap), from the harness's start and end times; nil for a log.
    public var launchGapMicros: Double? = nil

    /// Identifies the case across files: its file and name.
    public var caseKey: String { "\(source)#\(caseName)" }

    /// The folder the file is in (a sitting's name in `calibration/measurements/`).
    public var sitting: String { ((source as NSString).deletingLastPathComponent as NSString).lastPathComponent }
}

/// Reads measurement files: the harness's `ll.csv` (with `routing.csv` and `ll-run.json`
/// beside it) and DeepEP's `test_low_latency.py` logs.
public enum MeasurementReader {
    /// What a DeepEP log does not say, given by the user (defaults: DeepEP's test defaults).
    public struct LogSettings: Sendable {
        public var tokens = 128
        public var hidden = 7168
        public var experts = 288
        public var topK = 8
        public var gpusPerNode = 8
        public init() {}

        /// Splits a `--measurements` item into its path and, for a DeepEP log, the settings
        /// after its last colon (`log.txt:tokens=32,experts=64`); keys `tokens` (0...2^20),
        /// `experts` (1...65536), `hidden` (a multiple of 128 in 128...65536), `top_k`
        /// (1...64, at most `experts`), `gpus_per_node` (1...1024). An item without `=` after
        /// its last colon is a plain path with these settings. Throws
        /// ``MeasurementError`` (file: the item) for a bad setting.
        public func applying(_ item: String) throws -> (path: String, settings: LogSettings) {
            guard let colon = item.lastIndex(of: ":"), item[item.index(after: colon)...].contains("=") else { return (item, self) }
            var s = self
            for pair in item[item.index(after: colon)...].split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, let v = Int(kv[1]) else {
                    throw MeasurementError(file: item, message: "expected key=integer settings after the path, found \"\(pair)\"")
                }
                switch kv[0] {
                case "tokens" where (0...1_048_576).contains(v): s.tokens = v
                case "experts" where (1...65536).contains(v): s.experts = v
                case "hidden" where (128...65536).contains(v) && v % 128 == 0: s.hidden = v
                case "top_k" where (1...64).contains(v): s.topK = v
                case "gpus_per_node" where (1...1024).contains(v): s.gpusPerNode = v
                default:
                    throw MeasurementError(file: item, message: "\(kv[0])=\(v) is not a log setting in range (tokens, experts, hidden, top_k, gpus_per_node)")
                }
            }
            guard s.topK <= s.experts else { throw MeasurementError(file: item, message: "top_k must be at most experts") }
            return (String(item[..<colon]), s)
        }
    }

    /// Reads one file: a CSV whose header starts with `case,` or a DeepEP log. A case that
    /// lacks some rank's row (the harness goes on when a case fails on a rank) is left out
    /// and named in `notes`.
    public static func read(path: String, log: LogSettings = LogSettings(), notes: inout [String]) throws -> [DeepEPMeasurement] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue {
            throw MeasurementError(file: path, message: "is a directory; expected a measurement file (ll.csv or a DeepEP log)")
        }
        let text = try CSVTable.text(path)
        if text.hasPrefix("case,") || text.hasPrefix("\u{FEFF}case,") { return try parseHarnessCSV(text, file: path, notes: &notes) }
        return try parseDeepEPLog(text, file: path, settings: log)
    }

    /// ``read(path:log:notes:)`` without the notes.
    public static func read(path: String, log: LogSettings = LogSettings()) throws -> [DeepEPMeasurement] {
        var notes: [String] = []
        return try read(path: path, log: log, notes: &notes)
    }

    // MARK: The harness's CSV

    static let sizesDefault = (hidden: 7168, experts: 256, topK: 8)

    /// Parses `ll.csv`; reads `routing.csv` (required) and `ll-run.json` (sizes; optional,
    /// DeepSeek-V3's 7168 / 256 / top-8 when absent) from the same folder.
    public static func parseHarnessCSV(_ text: String, file: String, notes: inout [String]) throws -> [DeepEPMeasurement] {
        let folder = (file as NSString).deletingLastPathComponent
        var sizes = sizesDefault
        let runPath = (folder.isEmpty ? "." : folder) + "/ll-run.json"
        if FileManager.default.fileExists(atPath: runPath) {
            guard let data = FileManager.default.contents(atPath: runPath),
                let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            else {
                throw MeasurementError(file: runPath, message: "cannot read it as a JSON object with hidden, experts and top_k")
            }
            func size(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
                guard let v = json[key] else { return fallback }
                // JSON true/false also bridge to NSNumber: refuse them by their type name.
                guard !(v is Bool) || "\(type(of: v))".contains("Number"), let n = v as? NSNumber, String(cString: n.objCType) != "c",
                    let i = Int(exactly: n.doubleValue), range.contains(i)
                else {
                    throw MeasurementError(file: runPath, message: "\(key): expected an integer in \(range.lowerBound)...\(range.upperBound), found \(v)")
                }
                return i
            }
            sizes = (
                try size("hidden", sizes.hidden, 128...65536), try size("experts", sizes.experts, 1...ScenarioLimits.maxExperts),
                try size("top_k", sizes.topK, 1...ScenarioLimits.maxTopK)
            )
            guard sizes.hidden % 128 == 0, sizes.topK <= sizes.experts else {
                throw MeasurementError(file: runPath, message: "hidden must be a multiple of 128 and top_k at most experts")
            }
        }
        let table = try CSVTable(text, file: file)
        let routingPath = (folder.isEmpty ? "." : folder) + "/routing.csv"
        guard let routingData = FileManager.default.contents(atPath: routingPath), let routingText = String(data: routingData, encoding: .utf8)
        else {
            throw MeasurementError(file: file, message: "the case routing must be beside it: cannot read \(routingPath)")
        }
        var rows: [DeepEPMeasurement] = []
        var ranksOfCase: [String: Int] = [:]
        var seen = Set<String>()
        for row in table.rows {
            let name = try row.string("case")
            let ranks = try row.int("ranks", in: 1...ScenarioLimits.maxRanks)
            let rank = try row.int("rank", in: 0...(ranks - 1))
            guard seen.insert("\(name)#\(rank)").inserted else { throw row.fail("case \(name) rank \(rank) is given twice") }
            let tokensText = try row.string("tokens_by_rank")
            let tokens = try tokensText.split(separator: "/").map { part -> Int in
                guard let t = Int(part), (0...ScenarioLimits.maxTokensPerRank).contains(t) else {
                    throw row.fail("tokens_by_rank: expected tokens per rank in 0...\(ScenarioLimits.maxTokensPerRank) such as 128/32, found \"\(tokensText)\"")
                }
                return t
            }
            guard tokens.count == ranks else { throw row.fail("tokens_by_rank: expected \(ranks) counts, found \(tokens.count)") }
            if let known = ranksOfCase[name], known != ranks { throw row.fail("case \(name) has rows with \(known) and \(ranks) ranks") }
            guard sizes.experts % ranks == 0 else {
                throw row.fail("\(sizes.experts) experts (ll-run.json) do not divide among \(ranks) ranks: DeepEP needs them to")
            }
            ranksOfCase[name] = ranks
            let modeText = try row.string("mode")
            let settle = try row.double("settle_us")
            let mode: MeasuredMode
            switch modeText {
            case "fused": mode = .fused
            case "hook": mode = settle > 0 ? .hookSettled : .hook
            default: throw row.fail("mode: expected fused or hook, found \"\(modeText)\"")
            }
            rows.append(
                DeepEPMeasurement(
                    source: file, line: row.line, caseName: name, group: try row.string("group"), mode: mode, rank: rank, ranks: ranks,
                    gpusPerNode: ranks, tokensByRank: tokens, hidden: sizes.hidden, experts: sizes.experts, topK: sizes.topK, routing: nil,
                    preSpinMicros: try row.double("pre_spin_us_p50"), midSpinMicros: try row.double("mid_spin_us_p50"), settleMicros: settle,
                    dispatch: try row.time("dispatch_us"), combine: try row.time("combine_us"), dispatchSend: try row.time("dispatch_send_us"),
                    dispatchRecv: try row.time("dispatch_recv_us"), combineSend: try row.time("combine_send_us"),
                    combineRecv: try row.time("combine_recv_us"), endToEnd: try row.time("e2e_us")))
            if let end = try row.time("dispatch_end_us"), let start = try row.time("combine_start_us"), mode != .hookSettled, rows[rows.count - 1].midSpinMicros == 0 {
                // Kernels on one stream: the combine cannot start before the dispatch ended.
                guard start.p50 >= end.p50 else {
                    throw row.fail("combine_start_us_p50 (\(start.p50)) is before dispatch_end_us_p50 (\(end.p50)): kernels of one stream cannot overlap")
                }
                rows[rows.count - 1].launchGapMicros = start.p50 - end.p50
            }
            let r = rows[rows.count - 1]
            let needed = mode == .fused ? [r.dispatch, r.combine] : [r.dispatchSend, r.dispatchRecv, r.combineSend, r.combineRecv]
            if needed.contains(where: { $0 == nil }) {
                throw row.fail("a \(modeText)-mode row needs \(mode == .fused ? "dispatch_us and combine_us" : "the send and recv times of dispatch and combine")")
            }
        }
        // Cases without a row for every rank are left out, with a note.
        var rowsOfCase: [String: Int] = [:]
        for r in rows { rowsOfCase[r.caseName, default: 0] += 1 }
        let incomplete = Set(rowsOfCase.filter { $0.value != ranksOfCase[$0.key] }.keys)
        for name in incomplete.sorted() {
            let have = rows.filter { $0.caseName == name }.map(\.rank).sorted()
            notes.append("\(file): case \(name) left out: rows for ranks \(have) only, of 0...\((ranksOfCase[name] ?? 1) - 1) (did the case fail on a rank?)")
        }
        rows.removeAll { incomplete.contains($0.caseName) }
        let routing = try parseRouting(routingText, file: routingPath, cases: ranksOfCase, experts: sizes.experts, topK: sizes.topK)
        for i in rows.indices {
            // A case whose every rank has no token has no routing lines.
            let r = routing[rows[i].caseName] ?? (rows[i].tokensByRank.allSatisfy { $0 == 0 } ? MeasuredRouting(experts: Array(repeating: [], count: rows[i].ranks)) : nil)
            guard let r else {
                throw MeasurementError(file: routingPath, message: "no routing for case \(rows[i].caseName)")
            }
            for (rank, t) in rows[i].tokensByRank.enumerated() where r.experts[rank].count != t * sizes.topK {
                throw MeasurementError(
                    file: routingPath, message: "case \(rows[i].caseName): rank \(rank) has \(r.experts[rank].count / sizes.topK) tokens here, \(t) in \(file)")
            }
            rows[i].routing = r
        }
        return rows
    }

    /// Parses `routing.csv`: `case,rank,token,e0,...,e{k-1}`, tokens of each (case, rank)
    /// numbered from 0 in order.
    static func parseRouting(_ text: String, file: String, cases: [String: Int], experts: Int, topK: Int) throws -> [String: MeasuredRouting] {
        let table = try CSVTable(text, file: file)
        let expertColumns = (0..<topK).map { "e\($0)" }
        guard table.columns == ["case", "rank", "token"] + expertColumns else {
            throw MeasurementError(
                file: file, line: 1, message: "expected the columns case,rank,token,e0...e\(topK - 1) (top-\(topK) from ll-run.json), found \(table.columns.joined(separator: ","))")
        }
        var out: [String: MeasuredRouting] = [:]
        for row in table.rows {
            let name = try row.string("case")
            guard let ranks = cases[name] else { continue }
            let rank = try row.int("rank", in: 0...(ranks - 1))
            var routing = out[name] ?? MeasuredRouting(experts: Array(repeating: [], count: ranks))
            let token = try row.int("token", in: 0...Int(Int32.max))
            guard token * topK == routing.experts[rank].count else {
                throw row.fail("case \(name) rank \(rank): expected token \(routing.experts[rank].count / topK) next, found \(token)")
            }
            var chosen: [Int32] = []
            for c in expertColumns {
                let e = Int32(try row.int(c, in: 0...(experts - 1)))
                guard !chosen.contains(e) else { throw row.fail("case \(name) rank \(rank) token \(token) selects expert \(e) twice") }
                chosen.append(e)
            }
            routing.experts[rank].append(contentsOf: chosen)
            out[name] = routing
        }
        return out
    }

    // MARK: DeepEP's test log

    /// Parses the per-rank lines of DeepEP's `tests/test_low_latency.py`:
    ///
    /// ```
    /// [rank 0] Dispatch bandwidth: 267.26 GB/s, avg_t=28.11 us | Combine bandwidth: 354.74 GB/s, avg_t=40.98 us
    /// [rank 0] Dispatch send/recv time: 19.50 + 8.09 us | Combine send/recv time: 31.07 + 9.85 us
    /// ```
    ///
    /// The first gives the fused kernels, the second the hook-mode halves, the receive
    /// timed after a large GEMM (so: settled). Other lines are ignored. The log does not say
    /// the tokens, sizes or GPUs per node: `settings` does (DeepEP's test defaults).
    public static func parseDeepEPLog(_ text: String, file: String, settings: LogSettings) throws -> [DeepEPMeasurement] {
        var fused: [Int: (Double, Double, Int)] = [:]
        var hook: [Int: (Double, Double, Double, Double, Int)] = [:]
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("[rank "), let close = line.firstIndex(of: "]") else { continue }
            let isFused = line.contains("Dispatch bandwidth:")
            let isHook = line.contains("Dispatch send/recv time:")
            guard isFused || isHook else { continue }
            func fail(_ m: String) -> MeasurementError { MeasurementError(file: file, line: i + 1, message: m) }
            guard let rank = Int(line[line.index(line.startIndex, offsetBy: 6)..<close].trimmingCharacters(in: .whitespaces)), rank >= 0, rank < 65536
            else { throw fail("expected [rank N] with N a rank number") }
            if isFused {
                let values = numbers(after: "avg_t=", in: line)
                guard values.count == 2, values.allSatisfy({ $0.isFinite && $0 >= 0 && $0 <= 1e9 }) else {
                    throw fail("expected \"Dispatch bandwidth: ... avg_t=A us | Combine bandwidth: ... avg_t=C us\" with two non-negative times")
                }
                guard fused[rank] == nil else { throw fail("rank \(rank)'s fused times are given twice") }
                fused[rank] = (values[0], values[1], i + 1)
            } else {
                let parts = line.components(separatedBy: "|")
                let d = parts.count == 2 ? pair(parts[0], after: "time:") : nil
                let c = parts.count == 2 ? pair(parts[1], after: "time:") : nil
                guard let d, let c else { throw fail("expected \"Dispatch send/recv time: A + B us | Combine send/recv time: C + D us\"") }
                guard hook[rank] == nil else { throw fail("rank \(rank)'s send/recv times are given twice") }
                hook[rank] = (d.0, d.1, c.0, c.1, i + 1)
            }
        }
        let ranks = Set(fused.keys).union(hook.keys)
        guard let maxRank = ranks.max() else {
            throw MeasurementError(file: file, message: "no DeepEP low-latency result line found (\"[rank N] Dispatch bandwidth: ...\")")
        }
        guard ranks.count == maxRank + 1 else { throw MeasurementError(file: file, message: "ranks 0...\(maxRank) expected, found \(ranks.sorted())") }
        let n = maxRank + 1
        guard settings.experts % n == 0 else {
            throw MeasurementError(file: file, message: "\(settings.experts) experts do not divide among \(n) ranks: give the log's --num-experts")
        }
        func row(_ rank: Int, _ mode: MeasuredMode, line: Int) -> DeepEPMeasurement {
            DeepEPMeasurement(
                source: file, line: line, caseName: "deepep-test-\(mode.rawValue)", group: "deepep-log", mode: mode, rank: rank, ranks: n,
                gpusPerNode: settings.gpusPerNode, tokensByRank: Array(repeating: settings.tokens, count: n), hidden: settings.hidden,
                experts: settings.experts, topK: settings.topK, routing: nil, preSpinMicros: 0, midSpinMicros: 0,
                settleMicros: mode == .hookSettled ? 1000 : 0)
        }
        var out: [DeepEPMeasurement] = []
        if fused.count == n {
            for r in 0..<n {
                var m = row(r, .fused, line: fused[r]!.2)
                m.dispatch = MeasuredTime(fused[r]!.0)
                m.combine = MeasuredTime(fused[r]!.1)
                out.append(m)
            }
        }
        if hook.count == n {
            for r in 0..<n {
                let h = hook[r]!
                var m = row(r, .hookSettled, line: h.4)
                (m.dispatchSend, m.dispatchRecv, m.combineSend, m.combineRecv) = (MeasuredTime(h.0), MeasuredTime(h.1), MeasuredTime(h.2), MeasuredTime(h.3))
                out.append(m)
            }
        }
        for (kind, got) in [("\"Dispatch bandwidth\"", Set(fused.keys)), ("\"Dispatch send/recv time\"", Set(hook.keys))] where !got.isEmpty && got.count != n {
            let missing = (0..<n).filter { !got.contains($0) }
            throw MeasurementError(file: file, message: "the \(kind) lines of ranks \(missing) are missing (the log has ranks 0...\(n - 1))")
        }
        return out
    }

    /// The numbers that follow each `marker` in `line` (up to the next space).
    static func numbers(after marker: String, in line: String) -> [Double] {
        line.components(separatedBy: marker).dropFirst().map { part in
            Double(part.prefix { !$0.isWhitespace && $0 != "," }) ?? .nan
        }
    }

    /// `A + B us` after `marker`.
    static func pair(_ text: String, after marker: String) -> (Double, Double)? {
        guard let range = text.range(of: marker) else { return nil }
        let terms = text[range.upperBound...].replacingOccurrences(of: "us", with: "").split(separator: "+")
        guard terms.count == 2, let a = Double(terms[0].trimmingCharacters(in: .whitespaces)),
            let b = Double(terms[1].trimmingCharacters(in: .whitespaces)), a.isFinite, b.isFinite, a >= 0, b >= 0
        else { return nil }
        return (a, b)
    }
}

/// A small CSV reader for the harness's files: a header line, then comma-separated cells
/// (no quoting: the harness never writes commas inside a cell). Errors name the file, the
/// line and the column.
struct CSVTable {
    struct Row {
        let file: String
        let line: Int
        let cells: [Substring]
        let columns: [String: Int]

        func fail(_ message: String) -> MeasurementError { MeasurementError(file: file, line: line, message: message) }

        func raw(_ column: String) throws -> Substring {
            guard let i = columns[column] else { throw MeasurementError(file: file, line: 1, message: "the header has no column \(column)") }
            return cells[i]
        }
        func string(_ column: String) throws -> String {
            let v = try raw(column)
            guard !v.isEmpty else { throw fail("column \(column): expected a value, found an empty cell") }
            return String(v)
        }
        /// An integer column that may be empty (0 then).
        func optionalInt(_ column: String, in range: ClosedRange<Int>) throws -> Int {
            try raw(column).isEmpty ? 0 : try int(column, in: range)
        }
        func int(_ column: String, in range: ClosedRange<Int>) throws -> Int {
            let v = try raw(column)
            guard let i = Int(v), range.contains(i) else { throw fail("column \(column): expected an integer in \(range.lowerBound)...\(range.upperBound), found \"\(v)\"") }
            return i
        }
        func double(_ column: String) throws -> Double {
            let v = try raw(column)
            guard let d = Double(v), d.isFinite, d >= 0, d <= 1e9 else {
                throw fail("column \(column): expected a non-negative number of microseconds, found \"\(v)\"")
            }
            return d
        }
        /// `NAME_p50`, `NAME_p10`, `NAME_p90`; nil when the median cell is empty (not measured in this mode).
        func time(_ name: String) throws -> MeasuredTime? {
            guard try !raw("\(name)_p50").isEmpty else { return nil }
            return MeasuredTime(p50: try double("\(name)_p50"), p10: try double("\(name)_p10"), p90: try double("\(name)_p90"))
        }
    }

    let rows: [Row]
    /// The header's column names, in order.
    let columns: [String]

    init(_ text: String, file: String) throws {
        // "\r\n" is one Character in Swift: split on both line ends (Python's csv writes "\r\n").
        var lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
        while lines.last?.isEmpty == true { lines.removeLast() }
        if let first = lines.first, first.hasPrefix("\u{FEFF}") { lines[0] = first.dropFirst() }
        guard let header = lines.first, !header.isEmpty else { throw MeasurementError(file: file, line: 1, message: "expected a header line") }
        let names = header.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var columns: [String: Int] = [:]
        for (i, name) in names.enumerated() {
            guard columns[name] == nil else { throw MeasurementError(file: file, line: 1, message: "column \(name) appears twice") }
            columns[name] = i
        }
        var rows: [Row] = []
        for (i, line) in lines.enumerated().dropFirst() {
            guard let cells = Self.cells(line) else {
                throw MeasurementError(file: file, line: i + 1, message: "a quoted cell is not closed (a '\"' without its pair)")
            }
            guard cells.count == names.count else {
                throw MeasurementError(file: file, line: i + 1, message: "expected \(names.count) cells as in the header, found \(cells.count)")
            }
            rows.append(Row(file: file, line: i + 1, cells: cells, columns: columns))
        }
        guard !rows.isEmpty else { throw MeasurementError(file: file, message: "no row below the header") }
        self.rows = rows
        self.columns = names
    }

    /// A measurement file's text, or why it cannot be read.
    static func text(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw MeasurementError(file: path, message: "cannot read the file (missing, unreadable or not UTF-8 text)")
        }
        return text
    }

    /// The CSV file at `path`.
    init(path: String) throws { try self.init(try Self.text(path), file: path) }

    /// A line's cells split at commas, RFC 4180 quoting understood (a cell in double quotes
    /// may hold commas, `""` stands for one quote; Python's csv writes C++ kernel names so);
    /// nil for an unclosed quote. Quoted cells lose their quotes.
    static func cells(_ line: Substring) -> [Substring]? {
        guard line.contains("\"") else { return line.split(separator: ",", omittingEmptySubsequences: false) }
        var out: [Substring] = []
        var cell = ""
        var quoted = false
        var i = line.startIndex
        while i < line.endIndex {
            let c = line[i]
            if quoted {
                if c == "\"" {
                    let next = line.index(after: i)
                    if next < line.endIndex && line[next] == "\"" {
                        cell.append("\"")
                        i = next
                    } else {
                        quoted = false
                    }
                } else {
                    cell.append(c)
                }
            } else if c == "\"" && cell.isEmpty {
                quoted = true
            } else if c == "," {
                out.append(Substring(cell))
                cell = ""
            } else {
                cell.append(c)
            }
            i = line.index(after: i)
        }
        guard !quoted else { return nil }
        out.append(Substring(cell))
        return out
    }
}
