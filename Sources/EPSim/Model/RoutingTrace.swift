import Foundation

/// Recorded routing: the experts each token selected, for every layer or per layer.
///
/// CSV, one token per line: `layer,rank,token,e0,e1,...,e{k-1}`. `layer` counts the MoE
/// layers only, from 0 (dense layers are not counted): the first MoE layer is 0 whatever
/// `dense_layers` is. An empty `layer` applies to every MoE layer; per-layer lines override
/// it for their layer, and without every-layer lines each MoE layer needs its own. A header
/// line starting with `layer` is optional; lines may end in `\n` or `\r\n`. Tokens of each
/// rank are numbered from 0 without gaps.
public struct RoutingTrace: Sendable, Equatable {
    /// `selections[layerKey][rank]` = the rank's tokens' experts, `k` per token, flattened.
    /// Key -1 holds the lines that apply to every layer.
    public var selections: [Int: [[Int32]]]
    public var topK: Int

    public init(selections: [Int: [[Int32]]], topK: Int) {
        self.selections = selections
        self.topK = topK
    }

    /// Tokens of each rank in the trace (from the every-layer lines, else the lowest layer).
    public var tokensPerRank: [Int] {
        let key = selections[-1] != nil ? -1 : (selections.keys.min() ?? -1)
        return (selections[key] ?? []).map { $0.count / max(topK, 1) }
    }

    /// The experts of `token` on `rank` in MoE layer `layer`.
    /// - Precondition: the trace covers `layer` (``parse(_:file:ranks:experts:topK:moeLayers:)`` checks it).
    public func experts(layer: Int, rank: Int, token: Int) -> ArraySlice<Int32> {
        let table = selections[layer] ?? selections[-1]!
        return table[rank][(token * topK)..<((token + 1) * topK)]
    }

    /// Parses trace text for a model of `moeLayers` MoE layers; errors name the file and
    /// line: a layer the model does not have, or (without every-layer lines) a MoE layer
    /// with no line, is refused here rather than met during the run.
    public static func parse(_ text: String, file: String, ranks: Int, experts: Int, topK: Int, moeLayers: Int) throws -> RoutingTrace {
        var byLayer: [Int: [[Int32]]] = [:]
        var next: [Int: [Int]] = [:]
        // Parsed from the UTF-8 bytes, a line at a time, without building Strings (a
        // 20 MB trace read in about 4 s through Foundation's string splitting and trimming).
        let bytes = Array(text.utf8)
        var cells: [Range<Int>] = []
        cells.reserveCapacity(3 + topK)
        var chosen: [Int32] = []
        chosen.reserveCapacity(topK)
        var lineStart = 0
        var lineNumber = 0
        func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D }
        /// The integer in `r`, nil when it is not a plain decimal integer of at most 18 digits.
        func integer(_ r: Range<Int>) -> Int? {
            guard !r.isEmpty, r.count <= 18 else { return nil }
            var v = 0
            for i in r {
                let d = Int(bytes[i]) - 48
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
            }
            return v
        }
        while lineStart <= bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            lineNumber += 1
            // Trim spaces, tabs and a CR of a CRLF ending.
            var a = lineStart
            var b = lineEnd
            while a < b && isBlank(bytes[a]) { a += 1 }
            while b > a && isBlank(bytes[b - 1]) { b -= 1 }
            if a == b || bytes[a] == 0x23 /* # */ { continue }
            if lineNumber == 1 && bytes[a..<b].starts(with: Array("layer".utf8)) { continue }
            let line = lineNumber
            func fail(_ message: String) -> ScenarioError {
                ScenarioError(.wrongType, file: file, keyPath: "", line: line, message: message)
            }
            func text(_ r: Range<Int>) -> String { String(decoding: bytes[r], as: UTF8.self) }
            cells.removeAll(keepingCapacity: true)
            var cellStart = a
            for i in a...b where i == b || bytes[i] == 0x2C /* , */ {
                var x = cellStart
                var y = i
                while x < y && isBlank(bytes[x]) { x += 1 }
                while y > x && isBlank(bytes[y - 1]) { y -= 1 }
                cells.append(x..<y)
                cellStart = i + 1
                if cells.count > 3 + topK { break }
            }
            guard cells.count == 3 + topK else { throw fail("expected layer,rank,token and \(topK) experts (\(3 + topK) fields), found \(cells.count > 3 + topK ? "more" : String(cells.count))") }
            let layer = cells[0].isEmpty ? -1 : integer(cells[0]) ?? -2
            guard layer >= -1 else { throw fail("layer must be empty or a non-negative integer, found \"\(text(cells[0]))\"") }
            guard layer < moeLayers else {
                throw fail("layer \(layer) does not exist: the model has \(moeLayers) MoE layers, numbered 0...\(moeLayers - 1) (dense layers are not counted)")
            }
            guard let rank = integer(cells[1]), rank < ranks else { throw fail("rank must be in 0...\(ranks - 1), found \"\(text(cells[1]))\"") }
            if next[layer] == nil { next[layer] = [Int](repeating: 0, count: ranks) }
            let expected = next[layer]![rank]
            guard let token = integer(cells[2]), token == expected else {
                throw fail("rank \(rank)'s tokens must be numbered 0, 1, 2, ... in order: expected token \(expected), found \"\(text(cells[2]))\"")
            }
            guard token < ScenarioLimits.maxTokensPerRank else { throw fail("rank \(rank) has more than \(ScenarioLimits.maxTokensPerRank) tokens") }
            chosen.removeAll(keepingCapacity: true)
            for cell in cells[3...] {
                guard let e = integer(cell), e < experts else { throw fail("expert must be in 0...\(experts - 1), found \"\(text(cell))\"") }
                guard !chosen.contains(Int32(e)) else { throw fail("token \(token) of rank \(rank) selects expert \(e) twice") }
                chosen.append(Int32(e))
            }
            if byLayer[layer] == nil { byLayer[layer] = [[Int32]](repeating: [], count: ranks) }
            byLayer[layer]![rank].append(contentsOf: chosen)
            next[layer]![rank] += 1
        }
        guard !byLayer.isEmpty else { throw ScenarioError(.wrongType, file: file, keyPath: "", message: "the trace holds no token") }
        if byLayer[-1] == nil, let missing = (0..<moeLayers).first(where: { byLayer[$0] == nil }) {
            throw ScenarioError(
                .inconsistent, file: file, keyPath: "",
                message: "MoE layer \(missing) has no line, and no line has an empty layer (for every layer): give each of the \(moeLayers) MoE layers (0...\(moeLayers - 1), dense layers not counted) its lines, or lines for every layer")
        }
        let trace = RoutingTrace(selections: byLayer, topK: topK)
        let tokens = trace.tokensPerRank
        for (layer, table) in byLayer where table.map({ $0.count / topK }) != tokens {
            throw ScenarioError(
                .inconsistent, file: file, keyPath: "",
                message: "layer \(layer) has \(table.map { $0.count / topK }) tokens per rank, other lines \(tokens): every layer needs every token")
        }
        return trace
    }

    /// Writes the every-layer trace of `generator` for one layer and step, in the format
    /// ``parse(_:file:ranks:experts:topK:)`` reads.
    public static func write(_ generator: RoutingGenerator, step: Int, layer: Int) -> String {
        var out = "layer,rank,token," + (0..<generator.topK).map { "e\($0)" }.joined(separator: ",") + "\n"
        for r in 0..<generator.tokensPerRank.count {
            var current: [Int] = []
            var token = 0
            generator.forEachLogicalSelection(rank: r, step: step, layer: layer) { t, e in
                if t != token {
                    out += ",\(r),\(token)," + current.map(String.init).joined(separator: ",") + "\n"
                    current = []
                    token = t
                }
                current.append(e)
            }
            if !current.isEmpty { out += ",\(r),\(token)," + current.map(String.init).joined(separator: ",") + "\n" }
        }
        return out
    }
}
