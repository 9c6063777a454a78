import EventCore
import Foundation
import Yams

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
    /// Draft tokens a decode request may verify per step (multi-token prediction); a sanity
    /// bound, well above the 1-7 that MTP and EAGLE-style drafters use.
    public static let maxDraftTokens = 15
    /// The largest `max_dispatch_tokens_per_rank` the decoder reads (a sanity bound, the
    /// per-rank token limit); DeepEP's own limit depends on `nvshmem_qp_depth`
    /// (``DeepEPLimits/maxDispatchTokensPerRank(qpDepth:)``), checked after it.
    public static let maxDispatchCapacity = maxTokensPerRank
    /// The largest `nvshmem_qp_depth` the decoder reads (a sanity bound: NVSHMEM sizes each
    /// queue pair's work-request ring from it).
    public static let maxQPDepth = 1 << 20
}

extension Scenario {
    /// Replaces the schedule (e.g. from `epsim run --schedule`), validating it against the
    /// scenario's layers.
    public mutating func setSchedule(_ spec: ScheduleSpec) throws(ScheduleError) {
        let program = try Program(spec: spec, denseLayers: model.denseLayers, moeLayers: model.moeLayers)
        schedule = spec
        workload.maxRequestsPerRank = workload.requestCap(microBatches: program.microBatches)
    }

    /// The first rank and micro-batch whose fixed batch dispatches more tokens than
    /// `workload.max_dispatch_tokens_per_rank`, with those tokens; nil when every one fits
    /// (or no capacity is set, or the batches are drawn per step: those are clamped to it).
    public func capacityOverflow() -> (rank: Int, microBatch: MicroBatch, tokens: Int)? {
        guard let capacity = workload.maxDispatchTokensPerRank, workload.tokenDistribution == nil,
            let program = try? Program(spec: schedule, denseLayers: model.denseLayers, moeLayers: model.moeLayers)
        else { return nil }
        let plan = workload.plan(step: 0)
        for r in 0..<cluster.ranks {
            for mb in [MicroBatch.a, .b].prefix(program.microBatches) {
                let t = plan.tokenRange(rank: r, microBatch: mb, of: program.microBatches).count
                if t > capacity { return (r, mb, t) }
            }
        }
        return nil
    }

    /// Reads and validates the scenario file at `path`, with `overrides` (a sweep point's
    /// `key.path=value` assignments) applied to its YAML tree first, so that every value goes
    /// through the same validation as the file's own.
    ///
    /// - Throws: ``ScenarioError`` naming the file (and the overrides), key path and line.
    public static func load(path: String, overrides: [Override] = []) throws -> Scenario {
        try load(path: path, text: try readText(path: path), overrides: overrides)
    }

    /// ``load(path:overrides:)`` on the file's text, already read with ``readText(path:expected:maxBytes:)``:
    /// a sweep reads its file once for all its points, which is also what lets a pipe
    /// (`epsim sweep <(...)`) be read at all. `path` names the file in errors and is the
    /// folder of its relative trace and table paths.
    public static func load(path: String, text: String, overrides: [Override] = []) throws -> Scenario {
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
            // Merge keys are resolved only where the text can hold one: walking the tree costs
            // time in proportion to its aliases' expansion.
            guard text.contains("<<") else { return node }
            var visits = 0
            return try resolvingMergeKeys(node, path: "", file: file, visits: &visits)
        } catch let error as ScenarioError {
            throw error
        } catch let error as YamlError {
            throw Self.syntaxError(error, file: file)
        } catch {
            throw ScenarioError(.syntax, file: file, keyPath: "", message: "not valid YAML (\(error))")
        }
    }

    /// Nodes a file with merge keys may hold once its aliases are expanded (a scenario holds a
    /// few thousand; an alias of an alias of ... can reach billions, the "billion laughs").
    static let maxMergedNodes = 1_000_000

    /// `node` with YAML merge keys resolved (`<<: *base`, `<<: [*a, *b]`, the YAML 1.1 merge
    /// type): the keys of the merged mappings that the mapping does not set itself take the
    /// place of the `<<` entry, an earlier mapping of a list winning over a later one, so
    ///
    /// ```yaml
    /// cluster: &two {ranks: 2, gpus_per_node: 8}
    /// ...
    /// cluster: {<<: *two, ranks: 4}     # {ranks: 4, gpus_per_node: 8}
    /// ```
    static func resolvingMergeKeys(_ node: Node, path: String, file: String, visits: inout Int) throws -> Node {
        visits += 1
        guard visits <= maxMergedNodes else {
            throw ScenarioError(
                .tooLarge, file: file, keyPath: "",
                message: "the file's aliases expand to more than \(maxMergedNodes) YAML nodes; write it without nested aliases")
        }
        switch node {
        case .scalar, .alias:
            return node
        case .sequence(let sequence):
            var items: [Node] = []
            for (i, item) in sequence.enumerated() { items.append(try resolvingMergeKeys(item, path: "\(path)[\(i)]", file: file, visits: &visits)) }
            return .sequence(Node.Sequence(items, sequence.tag, sequence.style, sequence.mark))
        case .mapping(let mapping):
            func isMerge(_ key: Node) -> Bool {
                if case .scalar(let s) = key, s.string == "<<", s.style == .plain { return true }
                return false
            }
            let own = Set(mapping.compactMap { isMerge($0.key) ? nil : $0.key.scalar?.string })
            var merged = Set<String>()
            var pairs: [(Node, Node)] = []
            for (key, value) in mapping {
                let childPath = path.isEmpty ? (key.scalar?.string ?? "") : "\(path).\(key.scalar?.string ?? "")"
                let resolved = try resolvingMergeKeys(value, path: childPath, file: file, visits: &visits)
                guard isMerge(key) else {
                    pairs.append((key, resolved))
                    continue
                }
                let sources: [Node.Mapping]
                switch resolved {
                case .mapping(let m): sources = [m]
                case .sequence(let list) where list.allSatisfy({ $0.mapping != nil }): sources = list.compactMap(\.mapping)
                default:
                    throw ScenarioError(
                        .wrongType, file: file, keyPath: childPath, line: value.mark?.line, column: value.mark?.column,
                        message: "a merge key takes a mapping or a list of mappings (e.g. <<: *base or <<: [*a, *b])")
                }
                for source in sources {
                    for (k, v) in source {
                        guard let name = k.scalar?.string, !own.contains(name), !merged.contains(name) else { continue }
                        merged.insert(name)
                        pairs.append((k, v))
                    }
                }
            }
            return .mapping(Node.Mapping(pairs, mapping.tag, mapping.style, mapping.mark))
        }
    }

    /// The largest scenario file read, 8 MiB: a list of every rank's value at the most
    /// ranks takes 50 kB, every expert's slot at the most experts 0.5 MB, and a file much
    /// larger only costs seconds and gigabytes before its error (a 50 MB list took 25 s and
    /// 3.6 GB to refuse).
    public static let maxScenarioBytes = 8 << 20
    /// The largest routing trace or measured table read: 1 GiB.
    public static let maxDataFileBytes = 1 << 30

    /// Reads a text file (a scenario, or another text input of a command) with `open` and
    /// `read`, so that a pipe, a FIFO or a process substitution (`<(cat f)`, `/dev/fd/63`)
    /// reads as well as a regular file; Foundation's `String(contentsOfFile:)` refuses them.
    /// A UTF-8 byte-order mark is dropped.
    ///
    /// - Parameter expected: what the file should be, for the message about a directory.
    /// - Throws: ``ScenarioError`` (`unreadable-file`) saying what is wrong: the file does not
    ///   exist, may not be read, is a directory, is larger than `maxBytes`, or is not UTF-8
    ///   text (with the line and column of the first byte that is not).
    public static func readText(path: String, expected: String = "a scenario YAML file", maxBytes: Int = maxScenarioBytes) throws -> String {
        func failure(_ message: String, line: Int? = nil, column: Int? = nil) -> ScenarioError {
            ScenarioError(.unreadableFile, file: path, keyPath: "", line: line, column: column, message: message)
        }
        func systemFailure(_ code: Int32) -> ScenarioError {
            switch code {
            case ENOENT: return failure("cannot read the file: it does not exist")
            case EACCES, EPERM: return failure("cannot read the file: permission denied")
            case EISDIR: return failure("is a directory; expected \(expected)")
            case ENOTDIR: return failure("cannot read the file: a part of the path is not a folder")
            default: return failure("cannot read the file: \(String(cString: strerror(code)))")
            }
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw systemFailure(errno) }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { throw systemFailure(EISDIR) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw systemFailure(errno)
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            guard bytes.count <= maxBytes else { throw failure("is larger than \(maxBytes >> 20) MiB; expected \(expected)") }
        }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
            throw failure("is UTF-16 text; save it as UTF-8")
        }
        // Where the first byte that is not UTF-8 is, for the message.
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var (offset, line, column) = (0, 1, 1)
        while case .valid(let scalar) = parser.parseScalar(from: &iterator) {
            offset += scalar.count
            if scalar.count == 1 && scalar.first == 0x0A { (line, column) = (line + 1, 1) } else { column += 1 }
        }
        let byte = offset < bytes.count ? String(format: " (byte 0x%02X)", bytes[offset]) : ""
        throw failure("is not UTF-8 text: the text at this position\(byte) is not valid UTF-8; save the file as UTF-8", line: line, column: column)
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
}

extension ScheduleSpec {
    /// How messages name micro-batch `mb`'s dispatch: "micro-batch A" in a two-micro-batch
    /// schedule, "its dispatch" in a one-micro-batch one.
    func microBatchName(_ mb: MicroBatch) -> String {
        let two = (try? Program(spec: self, denseLayers: 0, moeLayers: 1).microBatches) == 2
        return two ? "micro-batch \(mb == .a ? "A" : "B")" : "its dispatch"
    }
}
