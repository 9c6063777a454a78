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

    /// Opens the database; the default `Results/` folder is created when missing. Errors
    /// are printed and become exit status 74 (I/O error).
    func open() throws -> RunStore {
        let p = resolvedPath
        if path == nil && ProcessInfo.processInfo.environment["EPSIM_DB"] == nil {
            try? FileManager.default.createDirectory(atPath: "Results", withIntermediateDirectories: true)
        }
        do {
            return try RunStore(path: p)
        } catch let error as StoreError {
            printError("error: \(error)")
            throw ExitCode(74)
        }
    }
}

/// Runs `body` against the store, printing a ``StoreError`` and exiting 74 (or 66 for an
/// unknown run id) instead of throwing it.
func withStore<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as StoreError {
        printError("error: \(error)")
        throw ExitCode(error.code == .unknownRun ? 66 : 74)
    }
}

/// Writes the CSV and/or trace exports of `kernels` to the given paths.
func writeExports(_ kernels: [KernelRecord], runID: Int64?, ranks: Int, title: String, csv: String?, trace: String?) throws {
    func write(_ text: String, to path: String, what: String) throws {
        try writeOutput(text, to: path, what: what)
        print("wrote \(what) to \(path)")
    }
    if let csv { try write(TimelineExport.csv(kernels, runID: runID), to: csv, what: "timeline CSV (\(kernels.count) kernels)") }
    if let trace { try write(TimelineExport.chromeTrace(kernels, ranks: ranks, title: title), to: trace, what: "Chrome trace") }
}
