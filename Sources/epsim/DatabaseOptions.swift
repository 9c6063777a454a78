import ArgumentParser
import EPSim
import EPSimStore
import Foundation

/// `--db PATH`, else `$EPSIM_DB`, else `Results/epsim.sqlite`.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("db"), help: "Run database (default: $EPSIM_DB, else Results/epsim.sqlite).")
    var path: String?

    init() {}
    init(path: String) { self.path = path }

    var resolvedPath: String {
        if let path { return path }
        if let env = ProcessInfo.processInfo.environment["EPSIM_DB"], !env.isEmpty { return env }
        return RunStore.defaultPath
    }

    /// Opens the database: `.read` for commands that only read (the file must exist and is
    /// never written), `.write` to change an existing one, `.create` to store runs (the default
    /// `Results/` folder is created when missing). Errors are printed and become exit status
    /// 66 (no such database) or 74 (it cannot be used).
    func open(_ mode: RunStore.Mode) throws -> RunStore {
        let p = resolvedPath
        if mode == .create && path == nil && (ProcessInfo.processInfo.environment["EPSIM_DB"] ?? "").isEmpty {
            try? FileManager.default.createDirectory(atPath: "Results", withIntermediateDirectories: true)
        }
        return try withStore {
            do {
                return try RunStore(path: p, mode: mode)
            } catch var error as StoreError where error.code == .noDatabase {
                error.message += "; runs are stored by `epsim run` in --db PATH, else $EPSIM_DB, else Results/epsim.sqlite of the current folder"
                throw error
            }
        }
    }
}

/// Runs `body` against the store, printing a ``StoreError`` and exiting with its status
/// (``exitStatus(_:)``) instead of throwing it.
func withStore<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as StoreError {
        printError("error: \(error)")
        throw ExitCode(exitStatus(error))
    }
}

/// The exit status of a database error (README's table): 66 when there is nothing to read
/// (no such database, no such run), 74 when the database cannot be used.
func exitStatus(_ error: StoreError) -> Int32 {
    switch error.code {
    case .unknownRun, .noDatabase: 66
    default: 74
    }
}

/// Writes the CSV and/or trace exports of `kernels` to the given paths; says so on standard
/// output, or on standard error when `quiet` (standard output carries JSON for a script).
func writeExports(_ kernels: [KernelRecord], runID: Int64?, ranks: Int, title: String, csv: String?, trace: String?, quiet: Bool = false) throws {
    func write(_ text: String, to path: String, what: String) throws {
        try writeOutput(text, to: path, what: what)
        if quiet { printError("wrote \(what) to \(path)") } else { print("wrote \(what) to \(path)") }
    }
    if let csv { try write(TimelineExport.csv(kernels, runID: runID), to: csv, what: "timeline CSV (\(kernels.count) kernels)") }
    if let trace { try write(TimelineExport.chromeTrace(kernels, ranks: ranks, title: title), to: trace, what: "Chrome trace") }
}
