import Crypto
import EPSim
import Foundation

extension Scenario {
    /// The SHA-256 of ``canonicalJSON``, as 64 lowercase hex digits: equal for two files that
    /// resolve to the same scenario, whatever their key order, whitespace, comments, spelling
    /// of numbers, name or description, and different when anything that reaches the
    /// simulation differs (a seed, a cost, the ranks, the schedule, a routing trace's content).
    ///
    /// Stored with every run (`runs.scenario_hash`); `docs/database.md` says what goes in.
    public var contentHash: String {
        SHA256.hash(data: Data(canonicalJSON.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The resolved scenario (every default filled in, every per-rank value expanded, presets
    /// and tables read) as canonical JSON, without its description and without names.
    ///
    /// Written from the values EPSim simulates, not from the file: an object per struct with
    /// its stored properties as keys (Swift names, sorted), a field at its zero value (0,
    /// false, nil, "", an empty list or object) left out so that a field added later with a
    /// zero default keeps existing hashes, and every property called `name` (the scenario's,
    /// the schedule's, a preset's: labels) left out; an enum as its string raw value, its
    /// name (`ATTN0`), or `{"case": payload}`; a time as integer picoseconds; a `Double` in
    /// its shortest round-trip form (`Infinity` as a string); dictionaries with sorted keys;
    /// no whitespace.
    public var canonicalJSON: String {
        var resolved = self
        resolved.name = ""
        resolved.description = ""
        return CanonicalJSON.encode(resolved)
    }
}

/// A deterministic JSON writer over any value, through reflection (``Mirror``).
enum CanonicalJSON {
    static func encode(_ value: Any) -> String { encoded(value) ?? "null" }

    /// The value's JSON, or nil for an absent optional.
    static func encoded(_ value: Any) -> String? {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return nil }
            return encoded(wrapped)
        }
        switch value {
        case let s as String: return string(s)
        case let b as Bool: return b ? "true" : "false"
        case let d as Double: return number(d)
        case let f as Float: return number(Double(f))
        case let i as any BinaryInteger: return String(describing: i)
        case let r as any RawRepresentable:
            // An enum by its name (`low-latency`, `ATTN0`) rather than an internal number.
            if mirror.displayStyle == .enum && !(r.rawValue is String) { return string(String(describing: value)) }
            return encoded(r.rawValue)
        default: break
        }
        switch mirror.displayStyle {
        case .collection?:
            return "[" + mirror.children.map { encoded($0.value) ?? "null" }.joined(separator: ",") + "]"
        case .set?:
            return "[" + mirror.children.map { encoded($0.value) ?? "null" }.sorted().joined(separator: ",") + "]"
        case .dictionary?:
            let pairs = mirror.children.map { entry -> (String, String?) in
                let kv = Array(Mirror(reflecting: entry.value).children)
                let key = kv.first.map { k in (k.value as? String) ?? encode(k.value) } ?? ""
                return (key, kv.count > 1 ? encoded(kv[1].value) : nil)
            }
            return object(pairs, omittingZeros: false)
        case .enum?:
            guard let payload = mirror.children.first else { return string(String(describing: value)) }
            return object([(payload.label ?? "", encoded(payload.value) ?? "null")], omittingZeros: false)
        case .tuple?:
            let children = Array(mirror.children)
            if children.allSatisfy({ $0.label?.hasPrefix(".") != false }) {
                return children.count == 1 ? encoded(children[0].value) : "[" + children.map { encoded($0.value) ?? "null" }.joined(separator: ",") + "]"
            }
            return object(children.map { ($0.label ?? "", encoded($0.value)) }, omittingZeros: true)
        default:
            // Names label a scenario, a schedule or a preset; they do not reach the simulation.
            let members = mirror.children.filter { $0.label != "name" }
            return object(members.map { ($0.label ?? "", encoded($0.value)) }, omittingZeros: true)
        }
    }

    static let zeros: Set<String> = ["0", "0.0", "false", "\"\"", "[]", "{}"]

    static func object(_ members: [(String, String?)], omittingZeros: Bool) -> String {
        let kept = members.compactMap { key, value in value.map { (key, $0) } }.filter { !omittingZeros || !zeros.contains($0.1) }
        return "{" + kept.sorted { $0.0 < $1.0 }.map { string($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    static func number(_ d: Double) -> String {
        if d.isNaN { return "\"NaN\"" }
        if d.isInfinite { return d < 0 ? "\"-Infinity\"" : "\"Infinity\"" }
        return d == 0 ? "0" : String(describing: d)
    }

    static func string(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}
