// swift-tools-version: 6.0
import PackageDescription

// The allocation gate: EPSim's benchmark that can fail. It counts the heap allocations of
// fixed simulations (deterministic, unlike wall time) and fails when a case allocates more
// than its recorded count, as swift-nio's allocation tests do. Kept out of the main package
// so that the malloc interposer never reaches `epsim` or its tests. Run from the repository
// root:
//
//     swift run -c release --package-path Benchmarks epsim-allocations [--update]
//
// Wall time stays a report: `epsim bench` (docs/performance.md).
let package = Package(
    name: "EPSimBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "EPSim", path: ".."),
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
    ],
    targets: [
        .executableTarget(
            name: "epsim-allocations",
            dependencies: [
                .product(name: "EPSim", package: "EPSim"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            ],
            path: "Sources/AllocationGate"
        )
    ]
)
