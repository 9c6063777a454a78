import ArgumentParser
import EPSim
import Foundation

/// `--ranks 0-3,7`: ranks and ranges of ranks. Its form is checked when it is parsed (in a
/// command's `validate()`), its ranks against the run's before any list of ranks is built,
/// so `--ranks 0-1000000000` is a usage error rather than an 8 GB allocation.
struct RankSelection {
    let text: String
    let ranges: [ClosedRange<Int>]

    /// - Throws: a usage error for an empty entry, a negative or non-numeric rank, a range
    ///   with more than two ends or one that goes down (`5-2`).
    init(parsing text: String) throws {
        self.text = text
        let example = "expected ranks and ranges of ranks such as 0-3,7"
        var ranges: [ClosedRange<Int>] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let entry = part.trimmingCharacters(in: .whitespaces)
            guard !entry.isEmpty else { throw ValidationError("--ranks \"\(text)\": an empty entry; \(example)") }
            let ends = entry.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard ends.count <= 2, let low = Self.rank(ends[0]), let high = Self.rank(ends[ends.count - 1]) else {
                throw ValidationError("--ranks \"\(text)\": \"\(entry)\" is not a rank (0 or more) or a range such as 2-5; \(example)")
            }
            guard low <= high else { throw ValidationError("--ranks \"\(text)\": the range \(entry) goes down; write it \(high)-\(low)") }
            ranges.append(low...high)
        }
        self.ranges = ranges
    }

    private static func rank(_ text: String) -> Int? {
        guard !text.isEmpty, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber) else { return nil }
        return Int(text)
    }

    /// The ranks selected of a run with `count` ranks, in the order given, each once.
    ///
    /// - Throws: a usage error (printed, exit 64) naming a rank the run does not have.
    func ranks(of count: Int, in label: String) throws -> [Int] {
        if let outside = ranges.first(where: { $0.upperBound >= count }) {
            let rank = outside.lowerBound >= count ? outside.lowerBound : outside.upperBound
            throw usageError("--ranks \"\(text)\": \(label) has \(count) rank\(count == 1 ? "" : "s") (\(Self.span(count))); there is no rank \(rank)")
        }
        var seen = Set<Int>()
        return ranges.flatMap { Array($0) }.filter { seen.insert($0).inserted }
    }

    static func span(_ count: Int) -> String { count == 1 ? "0 only" : "0-\(count - 1)" }
}

/// A usage error found after the run is known (a step or rank it does not have): printed
/// as `error: ...`, exit status 64.
func usageError(_ message: String) -> ExitCode {
    printError("error: \(message)")
    return ExitCode(64)
}

/// `--step N` of a run with `steps` steps; negative steps are refused by `validate()`.
func checkStep(_ step: Int?, steps: Int, in label: String) throws {
    guard let step, step >= steps else { return }
    throw usageError("--step \(step): \(label) has \(steps) step\(steps == 1 ? "" : "s") (\(RankSelection.span(steps))); there is no step \(step)")
}

/// `--step` before anything is read: a step number is 0 or more.
func validateStep(_ step: Int?) throws {
    if let step, step < 0 { throw ValidationError("--step \(step): expected a step number, 0 or more (0 is the first step)") }
}

/// A schedule preset named on the command line.
func validateSchedule(_ name: String?, option: String = "--schedule") throws {
    guard let name else { return }
    guard ScheduleSpec.preset(name) != nil else {
        throw ValidationError("\(option): unknown schedule \"\(name)\"; expected one of \(ScheduleSpec.presetNames.joined(separator: ", "))")
    }
}

/// An output file named by `option`, checked before any work: a usage error when the
/// path is empty, a directory, or in a folder that does not exist.
func validateOutputPath(_ path: String?, option: String) throws {
    guard let path else { return }
    guard !path.isEmpty else { throw ValidationError("\(option): expected the path of a file to write, found an empty string") }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw ValidationError("\(option) \(path): is a directory; expected the path of a file to write")
    }
    let folder = (path as NSString).deletingLastPathComponent
    guard folder.isEmpty || (FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) && isDirectory.boolValue) else {
        throw ValidationError("\(option) \(path): the folder \(folder) does not exist")
    }
}

/// Refuses (exit 64) an output path that is the same file as an input of the command (its
/// scenario, a table or trace, the run database) or as another output: writing it would
/// destroy what the command reads or has just written. Devices and pipes (`/dev/stdout`)
/// may be shared. Files that exist are compared by device and inode (links included),
/// others by their absolute path.
func validateDistinctOutputs(_ outputs: [(option: String, path: String?)], inputs: [(what: String, path: String?)]) throws {
    func identity(_ path: String) -> String? {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFREG else { return nil }
            return "\(info.st_dev):\(info.st_ino)"
        }
        return URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }
    var seen: [(String, String)] = inputs.compactMap { input in input.path.flatMap(identity).map { ($0, input.what) } }
    for (option, path) in outputs {
        guard let path, let id = identity(path) else { continue }
        if let clash = seen.first(where: { $0.0 == id }) {
            throw ValidationError("\(option) \(path): is \(clash.1); writing it would overwrite it (give another path)")
        }
        seen.append((id, "the path of \(option)"))
    }
}

/// Checks an output folder option before any work: not empty, not a file, and either a
/// writable folder or one that can be created (its nearest existing ancestor is a writable
/// folder).
func validateOutputFolder(_ path: String?, option: String) throws {
    guard let path else { return }
    guard !path.isEmpty else { throw ValidationError("\(option): expected the path of a folder to write into, found an empty string") }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        guard isDirectory.boolValue else { throw ValidationError("\(option) \(path): is a file; expected a folder to write into") }
        guard access(path, W_OK | X_OK) == 0 else { throw ValidationError("\(option) \(path): the folder may not be written") }
        return
    }
    var ancestor = (path as NSString).deletingLastPathComponent
    while !ancestor.isEmpty, !FileManager.default.fileExists(atPath: ancestor) { ancestor = (ancestor as NSString).deletingLastPathComponent }
    let existing = ancestor.isEmpty ? "." : ancestor
    guard FileManager.default.fileExists(atPath: existing, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("\(option) \(path): \(existing) is a file, so the folder cannot be created")
    }
    guard access(existing, W_OK | X_OK) == 0 else { throw ValidationError("\(option) \(path): cannot create it, \(existing) may not be written") }
}

/// Writes an output file (SVG, CSV, trace, Markdown), or prints why it cannot be written and
/// exits 73. A path that exists and is not a regular file (`/dev/stdout`, `/dev/null`, a
/// FIFO), or is a symbolic link, is written in place (an atomic replace would put a regular
/// file where the device or link was); any other is replaced atomically.
func writeOutput(_ text: String, to path: String, what: String) throws {
    var info = stat()
    var link = stat()
    let special = (stat(path, &info) == 0 && info.st_mode & S_IFMT != S_IFREG) || (lstat(path, &link) == 0 && link.st_mode & S_IFMT == S_IFLNK)
    do {
        if special {
            guard let handle = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileWriteNoPermission) }
            defer { try? handle.close() }
            let data = Data(text.utf8)
            try handle.write(contentsOf: data)
            // Through a link to a longer file, cut what the old content left (a device or
            // a pipe has no length to cut: that fails, harmlessly).
            try? handle.truncate(atOffset: UInt64(data.count))
        } else {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
    } catch {
        let folder = (path as NSString).deletingLastPathComponent
        let reason: String
        if !folder.isEmpty && !FileManager.default.fileExists(atPath: folder) {
            reason = "the folder \(folder) does not exist"
        } else if access(folder.isEmpty ? "." : folder, W_OK) != 0 {
            reason = "the folder \(folder.isEmpty ? "." : folder) may not be written"
        } else if FileManager.default.fileExists(atPath: path) && access(path, W_OK) != 0 {
            reason = "permission denied"
        } else {
            reason = (error as NSError).localizedDescription
        }
        printError("error: cannot write \(what) to \(path): \(reason)")
        throw ExitCode(73)
    }
}

/// The files a scenario file names (`table:` and `file:` values, relative to its folder), as
/// inputs an output must not overwrite; read loosely from its text, since the scenario is
/// read only later (nothing, if it cannot be read).
func referencedFiles(_ given: String) -> [(what: String, path: String?)] {
    let scenario = PackagePaths.resolve(given)
    // A regular file only: a pipe (`<(cat f)`) read here would be empty when read for real.
    var info = stat()
    guard stat(scenario, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size < 8 << 20,
        let text = try? String(contentsOfFile: scenario, encoding: .utf8)
    else { return [] }
    let folder = (scenario as NSString).deletingLastPathComponent
    return text.matches(of: /(?:table|file):\s*["']?([^\s,}"']+)/).map { match in
        let name = String(match.output.1)
        return ("a file the scenario reads", name.hasPrefix("/") ? name : (folder.isEmpty ? name : folder + "/" + name))
    }
}
