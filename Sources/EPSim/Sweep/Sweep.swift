import Foundation
import Yams

/// One `key.path=value` assignment applied to a scenario file before it is read.
public struct Override: Sendable, Equatable, CustomStringConvertible {
    /// Dotted key path as in the scenario file, e.g. `workload.tokens_per_rank`.
    public var keyPath: String
    /// The value as YAML text (`128`, `[64, 128]`, `deepseek-decode`).
    public var value: String

    public init(keyPath: String, value: String) {
        self.keyPath = keyPath
        self.value = value
    }

    public var description: String { "\(keyPath)=\(value)" }
}

/// A parameter sweep: the cross product of each varied key's values, in a fixed order (the
/// last `--vary` changes fastest), optionally cut into deterministic shards.
///
/// ```swift
/// let sweep = try Sweep(varying: ["workload.tokens_per_rank=32,64", "schedule=none,deepseek-decode"])
/// sweep.points.count   // 4
/// ```
public struct Sweep: Sendable {
    public struct Axis: Sendable, Equatable {
        public var keyPath: String
        public var values: [String]
    }

    public var axes: [Axis]

    /// The most points a sweep may have: its points (and their scenarios) are all held in
    /// memory, so a cross product of thousands of values per key is refused before anything
    /// is allocated.
    public static let maxPoints = 1_000_000

    /// Parses `key=v1,v2,...` specifications. Commas inside brackets belong to the value
    /// (`key=[1,2],[3,4]` has two values).
    ///
    /// - Throws: ``SweepError`` for a specification without `=` or with an empty value, a key
    ///   path with an empty part (`a..b`), a key varied twice, a value given twice for one key, or more than ``maxPoints``
    ///   points in all.
    public init(varying specs: [String]) throws {
        axes = try specs.map { spec in
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
                throw SweepError("--vary \"\(spec)\": expected key.path=value1,value2,...")
            }
            let key = String(spec[..<eq]).trimmingCharacters(in: .whitespaces)
            guard !key.split(separator: ".", omittingEmptySubsequences: false).contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty }) else {
                throw SweepError("--vary \"\(spec)\": the key path \"\(key)\" has an empty part; expected e.g. workload.tokens_per_rank")
            }
            var values: [String] = []
            var depth = 0
            var current = ""
            for c in spec[spec.index(after: eq)...] {
                if c == "[" || c == "{" { depth += 1 }
                if c == "]" || c == "}" { depth -= 1 }
                if c == "," && depth == 0 {
                    values.append(current.trimmingCharacters(in: .whitespaces))
                    current = ""
                } else {
                    current.append(c)
                }
            }
            values.append(current.trimmingCharacters(in: .whitespaces))
            guard !values.contains(where: \.isEmpty) else { throw SweepError("--vary \"\(spec)\": a value is empty") }
            var distinct = Set<String>()
            for v in values where !distinct.insert(v).inserted {
                throw SweepError("--vary \"\(spec)\": the value \(v) is given twice (a simulation is deterministic: the same point twice gives the same figures)")
            }
            return Axis(keyPath: key, values: values)
        }
        var seen = Set<String>()
        for axis in axes where !seen.insert(axis.keyPath).inserted {
            throw SweepError("--vary \(axis.keyPath) is given twice; give all its values in one --vary \(axis.keyPath)=v1,v2,...")
        }
        var count = 1
        for axis in axes {
            let (product, overflow) = count.multipliedReportingOverflow(by: axis.values.count)
            guard !overflow, product <= Self.maxPoints else {
                let sizes = axes.map { String($0.values.count) }.joined(separator: " x ")
                throw SweepError("--vary gives \(sizes) points, more than a sweep may hold (\(Self.maxPoints)); split it into several sweeps")
            }
            count = product
        }
    }

    /// Every point of the cross product, in order.
    public var points: [[Override]] {
        var out: [[Override]] = [[]]
        for axis in axes {
            out = out.flatMap { prefix in axis.values.map { prefix + [Override(keyPath: axis.keyPath, value: $0)] } }
        }
        return out
    }

    /// Short names for the varied keys: each key path's shortest dotted suffix that no other
    /// varied key shares (`serving.policy` -> `policy`; `workload.seed` and `serving.seed` keep
    /// their prefixes), by key path.
    public var shortKeys: [String: String] {
        let paths = axes.map { $0.keyPath.split(separator: ".").map(String.init) }
        var out: [String: String] = [:]
        for (i, parts) in paths.enumerated() {
            var n = 1
            while n < parts.count, paths.indices.contains(where: { j in j != i && paths[j].suffix(n) == parts.suffix(n) }) { n += 1 }
            out[axes[i].keyPath] = parts.suffix(n).joined(separator: ".")
        }
        return out
    }

    /// The indices of the points in shard `index` of `count` (0-based): every `count`-th
    /// point starting at `index`, so shards are disjoint, cover the sweep, and stay balanced.
    public static func shard(_ points: Int, index: Int, of count: Int) -> [Int] {
        Array(stride(from: index, to: points, by: count))
    }

    /// Parses `i/n` (0-based `i`).
    public static func parseShard(_ text: String) throws -> (index: Int, count: Int) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, (0..<n).contains(i) else {
            throw SweepError("--shard \"\(text)\": expected i/n with 0 <= i < n, e.g. 0/4")
        }
        return (i, n)
    }
}

public struct SweepError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}

extension Scenario {
    /// `node` with the value at `path` (`key.key[i]...`) replaced by `value`, creating
    /// missing mappings; used by ``Scenario/load(path:overrides:)``.
    static func setting(_ node: Node, path: [String], to value: Node, file: String, fullPath: String) throws -> Node {
        guard var key = path.first else { return value }
        // `key[i]` sets element `i` of a list.
        var index: Int?
        if key.hasSuffix("]"), let open = key.firstIndex(of: "["), let i = Int(key[key.index(after: open)..<key.index(before: key.endIndex)]) {
            index = i
            key = String(key[..<open])
        }
        var map: Node.Mapping
        switch node {
        case .mapping(let m): map = m
        case .scalar(let s) where s.string.isEmpty: map = Node.Mapping([])
        // A preset given by name (`model: deepseek-v3`) becomes `{preset: deepseek-v3}` so
        // that its fields can be overridden.
        case .scalar: map = Node.Mapping([(Node("preset"), node)])
        default:
            throw ScenarioError(.wrongType, file: file, keyPath: fullPath, message: "cannot set \(fullPath): \(key)'s parent is not a mapping")
        }
        let child = map[key] ?? Node("")
        if let index {
            guard case .sequence(var seq) = child, index >= 0, index < seq.count else {
                throw ScenarioError(
                    .wrongType, file: file, keyPath: fullPath, message: "cannot set \(fullPath): \(key) is not a list with an element \(index) in the file")
            }
            seq[index] = try setting(seq[index], path: Array(path.dropFirst()), to: value, file: file, fullPath: fullPath)
            map[key] = .sequence(seq)
        } else {
            map[key] = try setting(child, path: Array(path.dropFirst()), to: value, file: file, fullPath: fullPath)
        }
        return .mapping(map)
    }
}
