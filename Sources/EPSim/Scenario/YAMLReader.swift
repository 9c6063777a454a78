import Yams

/// A node of a parsed scenario file together with where it sits (file, key path, line).
///
/// Scenario files are read through this cursor rather than `Codable` so that every error
/// names the key path and line, unknown keys are refused (a typo such as `top-k` must not
/// be silently ignored), and numbers are range-checked where they are read.
struct YAMLValue {
    let node: Node
    let path: String
    let file: String

    func error(_ code: ScenarioError.Code, _ message: String) -> ScenarioError {
        ScenarioError(code, file: file, keyPath: path, line: node.mark?.line, column: node.mark?.column, message: message)
    }

    /// A short rendering of the node for "found …" in messages.
    var found: String {
        switch node {
        case .scalar(let s): return "\"\(s.string)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    private var plainScalar: String? {
        guard case .scalar(let s) = node else { return nil }
        // A quoted scalar is a string, never a number or a boolean.
        if s.style == .singleQuoted || s.style == .doubleQuoted { return nil }
        return s.string
    }

    func string() throws -> String {
        guard case .scalar(let s) = node else { throw error(.wrongType, "expected a string, found \(found)") }
        return s.string
    }

    func int(in range: ClosedRange<Int>, what: String = "an integer") throws -> Int {
        guard let text = plainScalar, let value = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw error(.wrongType, "expected \(what) in \(range.lowerBound)...\(range.upperBound), found \(found)")
        }
        guard range.contains(value) else {
            throw error(.outOfRange, "expected \(what) in \(range.lowerBound)...\(range.upperBound), found \(value)")
        }
        return value
    }

    /// A finite number in `range`; YAML's `.inf` and `.nan` are refused.
    func double(in range: ClosedRange<Double>, what: String = "a number") throws -> Double {
        let expected = "expected \(what) in \(Self.format(range.lowerBound))...\(Self.format(range.upperBound))"
        guard let text = plainScalar else { throw error(.wrongType, "\(expected), found \(found)") }
        let lowered = text.lowercased()
        if lowered.hasSuffix(".inf") || lowered.hasSuffix(".nan") || lowered == "inf" || lowered == "nan" {
            throw error(.outOfRange, "\(expected), found the non-finite value \(text)")
        }
        // Decimal only: Swift's `Double(_:)` also reads hexadecimal (`0x10`, `0x1p4`), which
        // the integer keys refuse; a number reads the same under every key.
        let decimal = text.allSatisfy { $0.isASCII && ($0.isNumber || "+-.eE_".contains($0)) }
        guard decimal, let value = Double(text.replacingOccurrences(of: "_", with: "")), value.isFinite else {
            throw error(.wrongType, "\(expected), found \(found)")
        }
        guard range.contains(value) else { throw error(.outOfRange, "\(expected), found \(text)") }
        return value
    }

    /// A finite number in `range`, or `infinite` (no limit).
    func doubleOrInfinite(in range: ClosedRange<Double>, what: String) throws -> Double {
        if case .scalar(let s) = node, s.string == "infinite" { return .infinity }
        return try double(in: range, what: "\(what) (or infinite)")
    }

    /// A bandwidth in GB/s, or `infinite` for a term that takes no time.
    func bandwidth() throws -> Double { try doubleOrInfinite(in: 1e-6...1e12, what: "a bandwidth in GB/s") }

    /// A message rate in millions per second, or `infinite` (no limit).
    func rate() throws -> Double { try doubleOrInfinite(in: 1e-6...1e9, what: "a message rate in millions per second") }

    func bool() throws -> Bool {
        guard let text = plainScalar else { throw error(.wrongType, "expected true or false, found \(found)") }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(.wrongType, "expected true or false, found \(found)")
        }
    }

    /// One of `choices`, compared exactly.
    func choice(_ choices: [String]) throws -> String {
        let expected = "expected one of \(choices.joined(separator: ", "))"
        guard case .scalar(let s) = node else { throw error(.wrongType, "\(expected), found \(found)") }
        guard choices.contains(s.string) else { throw error(.outOfRange, "\(expected), found \"\(s.string)\"") }
        return s.string
    }

    var isSequence: Bool { if case .sequence = node { return true } else { return false } }
    var isMapping: Bool { if case .mapping = node { return true } else { return false } }

    func list() throws -> [YAMLValue] {
        guard case .sequence(let seq) = node else { throw error(.wrongType, "expected a list, found \(found)") }
        return seq.enumerated().map { YAMLValue(node: $0.element, path: "\(path)[\($0.offset)]", file: file) }
    }

    func mapping() throws -> YAMLMapping {
        guard case .mapping(let map) = node else { throw error(.wrongType, "expected a mapping of keys, found \(found)") }
        return try YAMLMapping(map, value: self)
    }

    /// A scalar applied to every rank, or a list with exactly one entry per rank.
    func perRank<T>(count: Int, _ read: (YAMLValue) throws -> T) throws -> [T] {
        if isSequence {
            let items = try list()
            guard items.count == count else {
                throw error(.wrongLength, "expected one value per rank (\(count) values) or a single value, found a list of \(items.count)")
            }
            return try items.map(read)
        }
        let value = try read(self)
        return Array(repeating: value, count: count)
    }

    static func format(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x)
    }
}

/// A YAML mapping being read key by key; `finish()` refuses every key nobody asked for.
final class YAMLMapping {
    private var entries: [(key: String, value: YAMLValue)] = []
    private var used: Set<String> = []
    private var known: [String] = []
    let value: YAMLValue

    /// Duplicate keys never reach here: Yams refuses them while composing.
    init(_ map: Node.Mapping, value: YAMLValue) throws {
        self.value = value
        for (keyNode, valueNode) in map {
            let keyValue = YAMLValue(node: keyNode, path: value.path, file: value.file)
            guard case .scalar(let k) = keyNode else { throw keyValue.error(.wrongType, "expected a plain key, found \(keyValue.found)") }
            let childPath = value.path.isEmpty ? k.string : "\(value.path).\(k.string)"
            entries.append((k.string, YAMLValue(node: valueNode, path: childPath, file: value.file)))
        }
    }

    /// The value under `key`, if present (`null` counts as absent).
    func optional(_ key: String) -> YAMLValue? {
        known.append(key)
        used.insert(key)
        guard let v = entries.first(where: { $0.key == key })?.value else { return nil }
        if case .scalar(let s) = v.node, s.style == .plain, ["", "~", "null"].contains(s.string) { return nil }
        return v
    }

    func required(_ key: String, expected: String) throws -> YAMLValue {
        guard let v = optional(key) else {
            let path = value.path.isEmpty ? key : "\(value.path).\(key)"
            throw ScenarioError(
                .missingKey, file: value.file, keyPath: path, line: value.node.mark?.line,
                column: value.node.mark?.column, message: "missing; expected \(expected)")
        }
        return v
    }

    func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    /// Refuses unknown keys, listing the keys that are allowed here.
    func finish() throws {
        for entry in entries where !used.contains(entry.key) {
            let allowed = known.sorted().joined(separator: ", ")
            throw entry.value.error(.unknownKey, "unknown key \"\(entry.key)\"; allowed here: \(allowed)")
        }
    }
}
