import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a program as a child process and measures it: its standard output, wall time and
/// peak resident memory (`wait4`'s rusage, so the figure is the child's alone). Used by
/// `epsim bench`, which runs each measurement in a process of its own; usable by any
/// caller that needs a clean process per run (a sweep across binaries, a calibration
/// driver).
public enum ChildProcess {
    /// What a finished child gave back.
    public struct Result: Sendable {
        public var output: String
        public var wallSeconds: Double
        /// Peak resident set size in MiB.
        public var peakMB: Double
    }

    /// The error of a child that could not start or did not exit with status 0.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `executable` (an absolute path) with `arguments`, its standard output captured
    /// and standard error passed through; waits for it. Throws ``Failure`` when it cannot
    /// start or exits with a non-zero status.
    public static func run(_ executable: String, _ arguments: [String]) throws -> Result {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw Failure(description: "pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let clock = ContinuousClock.now
        guard posix_spawn(&pid, executable, &actions, nil, argv, environ) == 0 else {
            close(pipe[0])
            close(pipe[1])
            throw Failure(description: "cannot start \(executable)")
        }
        close(pipe[1])
        let output = FileHandle(fileDescriptor: pipe[0], closeOnDealloc: true).readDataToEndOfFile()
        var status: Int32 = 0
        var usage = rusage()
        wait4(pid, &status, 0, &usage)
        let elapsed = ContinuousClock.now - clock
        guard status == 0 else { throw Failure(description: "\(arguments.joined(separator: " ")) failed with status \(status)") }
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return Result(output: String(decoding: output, as: UTF8.self), wallSeconds: wall, peakMB: Double(usage.ru_maxrss) / 1024)
    }
}
