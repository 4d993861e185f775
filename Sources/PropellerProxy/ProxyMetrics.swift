import Prometheus
import PropellerCore

/// What `/metrics` shows for the proxy.
public final class ProxyMetrics: Sendable {
    struct Counters {
        var blobsServed: UInt64 = 0
        var bytesServed: UInt64 = 0
        var chunksPublished: UInt64 = 0
        var cacheHits: UInt64 = 0
        var registryFetches: UInt64 = 0
        var registryErrors: UInt64 = 0
        var resends: UInt64 = 0
        var resendRequests: UInt64 = 0
        var manifestsResolved: UInt64 = 0
        var evictions: UInt64 = 0
    }
    private let counters = Locked(Counters())

    public init() {}

    func update(_ change: (inout Counters) -> Void) { counters.withLock { change(&$0) } }

    public var registryFetches: UInt64 { counters.withLock { $0.registryFetches } }
    public var resends: UInt64 { counters.withLock { $0.resends } }

    private let registry = PrometheusCollectorRegistry()
    /// What the registry's counters were last brought to (they only increment: a scrape adds
    /// the difference).
    private let reported = Locked(Counters())

    /// `/metrics`: the counters, exposed by swift-prometheus (text format 0.0.4).
    func render() -> String {
        let c = counters.withLock { $0 }
        let rows: [(String, String, KeyPath<Counters, UInt64>)] = [
            ("blobs_served", "Blob streams published.", \.blobsServed),
            ("bytes_served", "Payload bytes published in chunks.", \.bytesServed),
            ("chunks_published", "Chunks published, resends included.", \.chunksPublished),
            ("cache_hits", "Blobs served from the proxy's cache.", \.cacheHits),
            ("registry_fetches", "Blobs fetched from a registry.", \.registryFetches),
            ("registry_errors", "Registry requests that failed.", \.registryErrors),
            ("resends", "Chunks published again on request.", \.resends),
            ("resend_requests", "Requests for missing chunks received (merged per blob).", \.resendRequests),
            ("manifests_resolved", "Image references resolved.", \.manifestsResolved),
            ("cache_evictions", "Blobs evicted from the cache.", \.evictions),
        ]
        let last = reported.withLock { previous -> Counters in
            defer { previous = c }
            return previous
        }
        for (name, help, field) in rows {
            let counter = registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "propeller", subsystem: "proxy", metricName: name, unitName: "total", helpText: help))
            if c[keyPath: field] > last[keyPath: field] { counter.increment(by: Int64(clamping: c[keyPath: field] - last[keyPath: field])) }
        }
        return registry.emitToString()
    }
}
