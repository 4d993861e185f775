// swift-tools-version:6.2
import PackageDescription

/// Propeller: a distributed container executor. Module boundaries follow DESIGN.md §2:
/// Core depends on nothing of ours; Runtime never imports MQTT; Manager never imports Runtime.
let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny"), .unsafeFlags(["-warnings-as-errors"])]

let package = Package(
    name: "propeller",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "propeller", targets: ["propeller"]),
        .executable(name: "propeller-run", targets: ["propeller-run"]),
        .library(name: "PropellerRuntime", targets: ["PropellerRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        // OTLP over HTTP only: the gRPC exporter's dependencies would double the build.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // Everything a freshly cloned child does, in async-signal-safe C.
        .target(
            name: "CLauncher",
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Werror"])]
        ),

        // openat2 and xattr helpers for code that must stay inside a directory tree.
        .target(name: "CFileSystem", cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Werror"])]),

        // libcurl's easy interface without varargs, for the registry client. libcurl is loaded
        // on first use (dlopen), not linked: see chttp.c.
        .target(
            name: "CHTTP",
            cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror"])]
        ),

        .target(name: "PropellerCore", swiftSettings: strict),
        // Trace context across the broker and spans recorded after the fact, on swift-distributed-tracing
        // (the OTLP exporter, swift-otel, is set up by the daemons' commands only).
        .target(name: "PropellerTracing", dependencies: [.product(name: "Tracing", package: "swift-distributed-tracing")], swiftSettings: strict),
        .target(name: "PropellerMQTT", dependencies: ["PropellerCore", "CMosquitto", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // libarchive's headers, its functions called through a copy loaded on first use (dlopen),
        // not linked: see archive_loader.c.
        .target(name: "CArchiveLoader", linkerSettings: [.linkedLibrary("dl")]),
        .target(
            name: "PropellerImage",
            dependencies: ["PropellerCore", "CArchiveLoader", "CFileSystem", "CHTTP", "CCrypto", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "PropellerRuntime",
            dependencies: [
                "PropellerCore", "CLauncher", "CSeccomp", "CCap",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Plumbing the daemons share (service loops under ServiceLifecycle).
        .target(
            name: "PropellerDaemon",
            dependencies: [.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: strict
        ),
        .target(
            name: "PropellerManager",
            dependencies: [
                "PropellerCore", "PropellerMQTT", "PropellerDaemon", "CCrypto", "PropellerTracing", "PropellerProvision",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The web console's files, compiled into the binary (nothing to install or fetch).
            resources: [.embedInCode("Console/index.html"), .embedInCode("Console/console.js"), .embedInCode("Console/console.css")],
            swiftSettings: strict
        ),
        // The manager's store on PostgreSQL, which several managers share.
        .target(
            name: "PropellerPostgres",
            dependencies: [
                "PropellerCore", "PropellerManager",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PropellerProvision",
            dependencies: ["PropellerCore", "CCrypto"],
            swiftSettings: strict
        ),
        .target(
            name: "PropellerProxy",
            dependencies: [
                "PropellerCore", "PropellerMQTT", "PropellerImage", "PropellerDaemon",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PropellerProplet",
            dependencies: [
                "PropellerCore", "PropellerMQTT", "PropellerRuntime", "PropellerImage", "CFileSystem", "PropellerTracing",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // `propeller run` and what it needs, without the daemons: the small `propeller-run`
        // binary links only this (no NIO, Hummingbird, GRDB), and starts in a fraction of the time.
        .target(
            name: "PropellerRunCLI",
            dependencies: [
                "PropellerCore", "PropellerRuntime", "PropellerImage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "propeller-run", dependencies: ["PropellerRunCLI"], swiftSettings: strict),
        .target(
            name: "PropellerCLI",
            dependencies: [
                "PropellerCore", "PropellerRuntime", "PropellerImage", "PropellerManager", "PropellerPostgres", "PropellerProplet", "PropellerProxy", "PropellerProvision", "PropellerRunCLI",
                "PropellerTracing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "propeller", dependencies: ["PropellerCLI"], swiftSettings: strict),
        .executableTarget(
            name: "propeller-bench",
            dependencies: ["PropellerRuntime", "PropellerImage", "PropellerCore", "PropellerProplet", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/RuntimeBench",
            swiftSettings: strict
        ),

        .executableTarget(
            name: "propeller-bench-scheduler",
            dependencies: ["PropellerManager", "PropellerCore", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/SchedulerBench",
            swiftSettings: strict
        ),

        .executableTarget(
            name: "propeller-fleet",
            dependencies: ["PropellerCore", "CMosquitto", .product(name: "AsyncHTTPClient", package: "async-http-client")],
            path: "Benchmarks/FleetSim",
            swiftSettings: [.unsafeFlags(["-warnings-as-errors"])]
        ),

        .target(name: "PropellerTestSupport", dependencies: ["PropellerCore"], path: "Tests/TestSupport"),
        .testTarget(name: "PropellerCoreTests", dependencies: ["PropellerCore", "PropellerTestSupport"]),
        .testTarget(name: "PropellerRuntimeTests", dependencies: ["PropellerRuntime", "PropellerCore", "PropellerTestSupport",
                                                                 .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "PropellerMQTTTests", dependencies: ["PropellerMQTT", "PropellerCore", "PropellerTestSupport"]),
        .testTarget(name: "PropellerImageTests", dependencies: ["PropellerImage", "PropellerCore", "CArchive", "CFileSystem", "PropellerTestSupport"]),
        .testTarget(name: "PropellerManagerTests", dependencies: [
            "PropellerManager", "PropellerPostgres", "PropellerCore", "PropellerTestSupport",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "PropellerProxyTests", dependencies: ["PropellerProxy", "PropellerImage", "PropellerCore", "PropellerTestSupport"]),
        .testTarget(name: "PropellerPropletTests", dependencies: ["PropellerProplet", "PropellerCore", "PropellerTestSupport"]),
        .testTarget(name: "PropellerProvisionTests", dependencies: ["PropellerProvision", "PropellerCore", "PropellerTestSupport"]),
        .testTarget(name: "PropellerCLITests", dependencies: ["PropellerCLI", "PropellerRunCLI", "PropellerProvision", "PropellerRuntime", "PropellerTestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["PropellerCore", "PropellerTestSupport"]),
        .testTarget(name: "SystemLibrariesTests", dependencies: ["CArchive", "CMosquitto", "CSeccomp", "CCap"]),
    ]
)
