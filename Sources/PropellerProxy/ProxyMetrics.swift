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

    func render() -> String {
        let c = counters.withLock { $0 }
        let rows: [(String, String, UInt64)] = [
            ("propeller_proxy_blobs_served_total", "Blob streams published.", c.blobsServed),
            ("propeller_proxy_bytes_served_total", "Payload bytes published in chunks.", c.bytesServed),
            ("propeller_proxy_chunks_published_total", "Chunks published, resends included.", c.chunksPublished),
            ("propeller_proxy_cache_hits_total", "Blobs served from the proxy's cache.", c.cacheHits),
            ("propeller_proxy_registry_fetches_total", "Blobs fetched from a registry.", c.registryFetches),
            ("propeller_proxy_registry_errors_total", "Registry requests that failed.", c.registryErrors),
            ("propeller_proxy_resends_total", "Chunks published again on request.", c.resends),
            ("propeller_proxy_resend_requests_total", "Requests for missing chunks received (merged per blob).", c.resendRequests),
            ("propeller_proxy_manifests_resolved_total", "Image references resolved.", c.manifestsResolved),
            ("propeller_proxy_cache_evictions_total", "Blobs evicted from the cache.", c.evictions),
        ]
        return rows.map { "# HELP \($0.0) \($0.1)\n# TYPE \($0.0) counter\n\($0.0) \($0.2)\n" }.joined()
    }
}
