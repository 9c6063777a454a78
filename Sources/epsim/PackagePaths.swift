import Foundation

/// Where `epsim` and the package it was built from are, so that the shipped scenarios and
/// measurements are found from any working directory.
enum PackagePaths {
    /// The package's root as it was when this binary was built (`#filePath` of this source
    /// file, three levels up). It may be gone (a binary copied elsewhere, the checkout moved):
    /// callers fall back to the working directory.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `relative` as given when it exists from the working directory, else under the package
    /// root when it exists there, else as given (the caller's error names it).
    static func resolve(_ relative: String) -> String {
        let files = FileManager.default
        if relative.hasPrefix("/") || files.fileExists(atPath: relative) { return relative }
        let candidate = root.appendingPathComponent(relative).path
        return files.fileExists(atPath: candidate) ? candidate : relative
    }

    /// The running executable: `/proc/self/exe` on Linux, else the bundle's executable, else
    /// `argv[0]` against the working directory.
    static var executable: String {
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return target }
        if let path = Bundle.main.executablePath { return path }
        let first = CommandLine.arguments[0]
        return first.hasPrefix("/") ? first : FileManager.default.currentDirectoryPath + "/" + first
    }
}
