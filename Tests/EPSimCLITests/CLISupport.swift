import Foundation
import Testing

/// Runs the built `epsim` executable as a user would and captures what it prints.
enum CLI {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `epsim` binary built next to this test bundle.
    static let executable: URL = {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent(),
            Bundle.main.bundleURL.deletingLastPathComponent(),
            Bundle.main.bundleURL,
        ].compactMap { $0 }.map { $0.appendingPathComponent("epsim") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
            ?? repoRoot.appendingPathComponent(".build/debug/epsim")
    }()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// A database for tests that do not name one, so that no test writes to `Results/`.
    static let scratchDatabase: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-cli-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent("scratch.sqlite").path
    }()

    static func run(_ arguments: [String], executable: URL = executable, environment: [String: String] = [:]) throws -> Output {
        try spawn(executable, arguments, environment: environment.merging(["EPSIM_DB": scratchDatabase]) { given, _ in given })
    }

    /// Runs `executable` with `arguments` in `directory`, the environment changed by
    /// `environment` (a nil value removes the variable), and captures what it prints.
    static func spawn(_ executable: URL, _ arguments: [String], in directory: URL = repoRoot, environment: [String: String?]) throws -> Output {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read before waiting so that a large output cannot fill the pipe and block.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Runs `command` with `bash -c` in the repository root, `$EPSIM` naming the built
    /// binary: for what only a shell can set up, such as a process substitution `<(cat f)`.
    static func shell(_ command: String) throws -> Output {
        try run(["-c", command], executable: URL(fileURLWithPath: "/bin/bash"), environment: ["EPSIM": executable.path])
    }

    static var shippedScenarios: [String] {
        let dir = repoRoot.appendingPathComponent("Scenarios")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.sorted().map { "Scenarios/\($0)" }
    }

    /// Writes `text` to a fresh temporary file and returns its path.
    static func temporaryFile(_ text: String, name: String = "scenario.yaml") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("epsim-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// Writes `bytes` (which need not be UTF-8) to a fresh temporary file and returns its path.
    static func temporaryFile(bytes: [UInt8], name: String = "scenario.yaml") throws -> String {
        let path = try temporaryFile("", name: name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}
