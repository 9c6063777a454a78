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
    /// Upper bound on flows a run may carry (steps x layers x micro-batches x 2 x N^2).
    public static let maxFlows: Double = 5e10
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

    /// Reads and validates the scenario file at `path`.
    ///
    /// - Throws: ``ScenarioError`` naming the file, key path and line for any problem.
    public static func load(path: String) throws -> Scenario {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ScenarioError(.unreadableFile, file: path, keyPath: "", message: "cannot read the file (\(Self.reason(error)))")
        }
        let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return try parse(yaml: text, file: path, defaultName: stem)
    }

    /// Parses scenario YAML text; `file` is used only in error messages.
    public static func parse(yaml text: String, file: String, defaultName: String = "scenario") throws -> Scenario {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ScenarioError(.syntax, file: file, keyPath: "", message: "the file is empty; expected a mapping with at least cluster.ranks")
            }
            root = node
        } catch let error as ScenarioError {
            throw error
        } catch let error as YamlError {
            throw Self.syntaxError(error, file: file)
        } catch {
            throw ScenarioError(.syntax, file: file, keyPath: "", message: "not valid YAML (\(error))")
        }
        let base = URL(fileURLWithPath: file).deletingLastPathComponent().path
        return try ScenarioDecoder(file: file, baseDirectory: base).decode(YAMLValue(node: root, path: "", file: file), defaultName: defaultName)
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
