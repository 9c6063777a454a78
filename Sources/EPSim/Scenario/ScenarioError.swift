/// What is wrong with a scenario file, said so that the user can fix it without reading code.
///
/// Modelled on swift-nio's `FileSystemError`: a code to switch on, the file, the key path
/// inside the file (`workload.tokens_per_rank[3]`), the line and column where the YAML
/// parser saw it, what was expected and what was found.
///
/// ```
/// Scenarios/x.yaml:7:22: workload.tokens_per_rank[3]: expected a non-negative integer, found "-4"
/// ```
public struct ScenarioError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case unreadableFile = "unreadable-file"
        case syntax
        case unknownKey = "unknown-key"
        case missingKey = "missing-key"
        case wrongType = "wrong-type"
        case outOfRange = "out-of-range"
        case wrongLength = "wrong-length"
        case inconsistent
        case tooLarge = "too-large"
        case invalidSchedule = "invalid-schedule"
    }

    public var code: Code
    /// The scenario file, as the user named it.
    public var file: String
    /// Dotted key path with list indices, e.g. `costs.attn1_us[1]`; empty for the whole file.
    public var keyPath: String
    /// 1-based line and column of the offending node, when known.
    public var line: Int?
    public var column: Int?
    /// The human message: what was expected and what was found.
    public var message: String

    public init(_ code: Code, file: String, keyPath: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.code = code
        self.file = file
        self.keyPath = keyPath
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        let path = keyPath.isEmpty ? "" : " \(keyPath):"
        return "\(location):\(path) \(message)"
    }
}
