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
        // `isNewline` splits "\r\n" too, which Swift holds as one Character.
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || (i == 0 && line.hasPrefix("layer")) { continue }
            func fail(_ message: String) -> ScenarioError {
                ScenarioError(.wrongType, file: file, keyPath: "", line: i + 1, message: message)
            }
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == 3 + topK else { throw fail("expected layer,rank,token and \(topK) experts (\(3 + topK) fields), found \(cells.count)") }
            let layer = cells[0].isEmpty ? -1 : Int(cells[0]) ?? -2
            guard layer >= -1 else { throw fail("layer must be empty or a non-negative integer, found \"\(cells[0])\"") }
            guard layer < moeLayers else {
                throw fail("layer \(layer) does not exist: the model has \(moeLayers) MoE layers, numbered 0...\(moeLayers - 1) (dense layers are not counted)")
            }
            guard let rank = Int(cells[1]), (0..<ranks).contains(rank) else { throw fail("rank must be in 0...\(ranks - 1), found \"\(cells[1])\"") }
            let expected = next[layer, default: [Int](repeating: 0, count: ranks)][rank]
            guard let token = Int(cells[2]), token == expected else {
                throw fail("rank \(rank)'s tokens must be numbered 0, 1, 2, ... in order: expected token \(expected), found \"\(cells[2])\"")
            }
            var chosen: [Int32] = []
            for cell in cells[3...] {
                guard let e = Int(cell), (0..<experts).contains(e) else { throw fail("expert must be in 0...\(experts - 1), found \"\(cell)\"") }
                guard !chosen.contains(Int32(e)) else { throw fail("token \(token) of rank \(rank) selects expert \(e) twice") }
                chosen.append(Int32(e))
            }
            byLayer[layer, default: [[Int32]](repeating: [], count: ranks)][rank].append(contentsOf: chosen)
            next[layer, default: [Int](repeating: 0, count: ranks)][rank] += 1
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
