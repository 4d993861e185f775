import Hummingbird
import Logging
import PropellerCore
import PropellerDaemon
import PropellerImage
import PropellerMQTT
import ServiceLifecycle

/// Everything `propeller proxy` runs: the MQTT side, the blob cache and `/health` + `/metrics`.
public struct ProxyServer: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 7071
        public var cacheDirectory: String
        public var cacheBytes: UInt64 = 10 << 30
        public var mqtt: MQTTConfiguration
        public var topics: Topics
        public var service = ProxyService.Options()
        public var registry: @Sendable () throws -> RegistryClient

        public init(cacheDirectory: String, mqtt: MQTTConfiguration, topics: Topics, registry: @escaping @Sendable () throws -> RegistryClient) {
            self.cacheDirectory = cacheDirectory
            self.mqtt = mqtt
            self.topics = topics
            self.registry = registry
        }
    }

    let options: Options
    let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run() async throws {
        let metrics = ProxyMetrics()
        let cache = try BlobCache(directory: options.cacheDirectory, capBytes: options.cacheBytes)
        let client = try MQTTClient(options.mqtt)
        let service = ProxyService(client: client, topics: options.topics, registry: options.registry, cache: cache, metrics: metrics,
                                   options: options.service, logger: logger)
        // Serves /health and /metrics while the broker is away; the client connects (and
        // reconnects) on its own thread.
        try client.start()
        client.reportFirstConnection(logger: logger)
        logger.notice("proxy starting", metadata: ["broker": "\(options.mqtt.host):\(options.mqtt.port)", "chunk_size": "\(options.service.chunkSize)"])

        let router = Router()
        router.get("/health") { _, _ in Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#))) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(options.host, port: options.port), serverName: "propeller-proxy"),
                              logger: logger)
        let loop = LoopService { try await service.run() }
        let group = ServiceGroup(configuration: .init(services: [.init(service: app), .init(service: loop)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        defer { client.disconnect() }
        try await group.run()
    }
}
