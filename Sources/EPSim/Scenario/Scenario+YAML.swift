import EventCore
import Foundation
import Yams

/// Limits that keep a scenario within what this machine can hold; checked before anything
/// is allocated, so an absurd file is refused with a message instead of exhausting memory.
public enum ScenarioLimits {
    public static let maxRanks = 8192
    public static let maxExperts = 65536
    public static let maxTopK = 64
    public static let maxLayers = 1024
    public static let maxTokensPerRank = 1 << 20
    public static let maxSteps = 100_000
    /// Upper bound on selections of one layer (they are counted in 32-bit integers).
    public static let maxSelectionsPerLayer = Int(Int32.max)
    public static let maxMicros = 1e9
}

extension Scenario {
    /// Replaces the schedule (e.g. from `epsim run --schedule`), validating it against the
    /// scenario's layers.
    public mutating func setSchedule(_ spec: ScheduleSpec) throws(ScheduleError) {
        _ = try Program(spec: spec, denseLayers: model.denseLayers, moeLayers: model.moeLayers)
        schedule = spec
    }

    /// Reads and validates the scenario file at `path`, with `overrides` (a sweep point's
    /// `key.path=value` assignments) applied to its YAML tree first, so that every value goes
    /// through the same validation as the file's own.
    ///
    /// - Throws: ``ScenarioError`` naming the file (and the overrides), key path and line.
    public static func load(path: String, overrides: [Override] = []) throws -> Scenario {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ScenarioError(.unreadableFile, file: path, keyPath: "", message: "cannot read the file (\(Self.reason(error)))")
        }
        let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        var root = try composeRoot(text, file: path)
        let file = overrides.isEmpty ? path : "\(path) [\(overrides.map(\.description).joined(separator: " "))]"
        for o in overrides {
            let value: Node
            do {
                value = try Yams.compose(yaml: o.value) ?? Node("")
            } catch {
                throw ScenarioError(.syntax, file: file, keyPath: o.keyPath, message: "the value \"\(o.value)\" is not valid YAML")
            }
            root = try setting(root, path: o.keyPath.split(separator: ".").map(String.init), to: value, file: file, fullPath: o.keyPath)
        }
        return try decodeRoot(root, file: file, baseDirectory: URL(fileURLWithPath: path).deletingLastPathComponent().path, defaultName: stem)
    }

    /// Parses scenario YAML text; `file` is used only in error messages (and its folder for
    /// the relative paths of trace and table files).
    public static func parse(yaml text: String, file: String, defaultName: String = "scenario") throws -> Scenario {
        try decodeRoot(
            try composeRoot(text, file: file), file: file, baseDirectory: URL(fileURLWithPath: file).deletingLastPathComponent().path,
            defaultName: defaultName)
    }

    static func composeRoot(_ text: String, file: String) throws -> Node {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ScenarioError(.syntax, file: file, keyPath: "", message: "the file is empty; expected a mapping with at least cluster.ranks")
            }
            return node
        } catch let error as ScenarioError {
            throw error
        } catch let error as YamlError {
            throw Self.syntaxError(error, file: file)
        } catch {
            throw ScenarioError(.syntax, file: file, keyPath: "", message: "not valid YAML (\(error))")
        }
    }

    static func decodeRoot(_ root: Node, file: String, baseDirectory: String, defaultName: String) throws -> Scenario {
        try ScenarioDecoder(file: file, baseDirectory: baseDirectory).decode(YAMLValue(node: root, path: "", file: file), defaultName: defaultName)
    }

    static func syntaxError(_ error: YamlError, file: String) -> ScenarioError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return ScenarioError(.syntax, file: file, keyPath: "", line: mark.line, column: mark.column, message: "YAML syntax error: \(problem)")
        case .composer(_, let problem, let mark, _):
            return ScenarioError(.syntax, file: file, keyPath: "", line: mark.line, column: mark.column, message: "YAML error: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ScenarioError(
                .inconsistent, file: file, keyPath: duplicates.sorted().joined(separator: ", "),
                line: context.mark.line, column: context.mark.column,
                message: "key given twice in one mapping; give each key once")
        default:
            return ScenarioError(.syntax, file: file, keyPath: "", message: "YAML error: \(error)")
        }
    }

    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError { return underlying.localizedDescription }
        return ns.localizedDescription
    }
}
