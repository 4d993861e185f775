import ArgumentParser
import Logging
import PropellerCore
import PropellerRunCLI
import PropellerImage
import PropellerProxy

/// `propeller proxy`: registry access and chunked image distribution over MQTT.
struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run the image proxy: pull from registries, ship blobs to proplets over MQTT in verified chunks.",
        discussion: """
        Proplets ask on registry/proplet; the proxy resolves the reference with its registry \
        credentials (--registry-username with --registry-password-file or -stdin, \
        PROXY_REGISTRY_USERNAME/PASSWORD/TOKEN, or ~/.docker/config.json; PROXY_AUTHENTICATE=false \
        ignores them), fetches each blob once into its cache (DATA_DIR/proxy, --cache-size, least \
        recently used out first), and publishes it on registry/blobs/DIGEST in chunks of \
        --chunk-size, each with its index and SHA-256, paced by the broker's acknowledgements. \
        /health and /metrics are served on --http.
        """
    )

    @OptionGroup var daemon: DaemonOptions
    @OptionGroup var images: ImageOptions

    @Option(help: ArgumentHelp("Address of /health and /metrics (env PROXY_HTTP_PORT sets the port; default 127.0.0.1:7071).", valueName: "host:port"))
    var http: String?

    @Option(name: .customLong("chunk-size"), help: ArgumentHelp("Bytes per chunk (env PROXY_CHUNK_SIZE; default 512K).", valueName: "size"))
    var chunkSize: String?

    @Option(name: .customLong("cache-size"), help: ArgumentHelp("Most bytes of blobs kept (default 10G).", valueName: "size"))
    var cacheSize: String = "10G"

    func run() async throws {
        daemon.bootstrapLogging()
        let logger = Logger(label: "propeller.proxy")
        let env = Environment.current
        guard let chunk = try? ByteSize(parsing: chunkSize ?? env["PROXY_CHUNK_SIZE"] ?? "512K"), chunk.bytes >= 4096, chunk.bytes <= 64 << 20 else {
            throw ValidationError("invalid chunk size: expected 4K to 64M")
        }
        guard let cache = try? ByteSize(parsing: cacheSize), cache.bytes > 0 else { throw ValidationError("invalid --cache-size \"\(cacheSize)\"") }
        var host = "127.0.0.1"
        var port = Int(env["PROXY_HTTP_PORT"] ?? "") ?? 7071
        if let http { (host, port) = try httpEndpoint(http) }
        let anonymous = env["PROXY_AUTHENTICATE"].map { $0 == "false" || $0 == "0" } ?? false
        // One client for the proxy's life: credentials are read once (stdin cannot be read
        // twice) and Bearer tokens are cached across requests.
        let client = anonymous ? RegistryClient(insecureRegistries: Set(images.insecureRegistry)) : try images.registryClient()
        let registry: @Sendable () throws -> RegistryClient = { client }
        let dataDir = absolutePath(images.dataDir)
        try makeDirectory(dataDir + "/proxy")
        var options = ProxyServer.Options(cacheDirectory: dataDir + "/proxy",
                                          mqtt: try daemon.mqttConfiguration(envName: "PROXY_MQTT_ADDRESS", clientID: "propeller-proxy-\(daemon.domain)-\(daemon.channel)"),
                                          topics: daemon.topics, registry: registry)
        options.host = host
        options.port = port
        options.cacheBytes = cache.bytes
        options.service.chunkSize = Int(chunk.bytes)
        options.service.faults = env["PROPELLER_PROXY_FAULTS"]
        if options.service.faults != nil { logger.warning("test faults are on (PROPELLER_PROXY_FAULTS)") }
        try await ProxyServer(options: options, logger: logger).run()
        logger.notice("proxy stopped")
    }
}
