// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "EPSim",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "epsim", targets: ["epsim"]),
        .library(name: "EPSim", targets: ["EPSim"]),
        .library(name: "EPSimStore", targets: ["EPSimStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // SHA-256 for the scenario content hash (Foundation has none on Linux).
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // Domain-free discrete-event core: time, a deterministic future-event list.
        .target(name: "EventCore"),
        // The expert-parallel model: cluster, routing, schedules, costs, network, engine.
        .target(
            name: "EPSim",
            dependencies: ["EventCore", .product(name: "Yams", package: "Yams")]
        ),
        // Storage (SQLite through GRDB) and timeline exports (CSV, Chrome trace JSON).
        .target(
            name: "EPSimStore",
            dependencies: [
                "EPSim", "EventCore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The command-line tool: parses, calls, prints.
        .executableTarget(
            name: "epsim",
            dependencies: ["EPSim", "EPSimStore", "EventCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "EventCoreTests", dependencies: ["EventCore"]),
        .testTarget(name: "EPSimTests", dependencies: ["EPSim", "EventCore"]),
        .testTarget(name: "EPSimStoreTests", dependencies: ["EPSimStore", "EPSim", "EventCore"]),
        .testTarget(name: "EPSimCLITests", dependencies: ["epsim"]),
    ]
)
