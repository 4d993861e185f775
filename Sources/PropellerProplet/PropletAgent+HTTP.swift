import Hummingbird
import Logging

extension PropletAgent {
    /// Serves `GET /health` (with the broker connection) and `GET /metrics` (``PropletMetrics``,
    /// Prometheus text format) on `host:port` until cancelled (`propeller proplet --http`).
    public nonisolated func serveHTTP(host: String, port: Int, logger: Logger) async throws {
        let router = Router()
        router.get("/health") { [self] _, _ in
            let connected = client.isConnected
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ok","broker":"\#(connected ? "connected" : "disconnected")"}"#)))
        }
        router.get("/metrics") { [self] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: ByteBuffer(string: await metricsPage())))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "propeller-proplet"), logger: logger)
        try await app.runService()
    }
}
