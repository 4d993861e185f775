import ServiceLifecycle

/// A long-running loop (an MQTT message loop, a liveness ticker) as a service of a daemon's
/// `ServiceGroup`: cancelled on graceful shutdown (SIGTERM/SIGINT), after which a
/// `CancellationError` is a normal end.
public struct LoopService: Service {
    let body: @Sendable () async throws -> Void

    public init(_ body: @escaping @Sendable () async throws -> Void) { self.body = body }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            do { try await body() } catch is CancellationError {}
        }
    }
}
