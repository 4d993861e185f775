import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import PropellerCore
import PropellerDaemon
import PropellerMQTT
import ServiceLifecycle

/// Everything `propeller manager` runs: store, task service, MQTT bus, liveness monitor, REST.
public struct ManagerServer: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 7070
        /// Opens the store: SQLite at a path by default, or what `--store` names.
        public var openStore: @Sendable () throws -> any ManagerStore & TokenStore
        public var mqtt: MQTTConfiguration
        public var topics: Topics
        /// Bearer tokens from the configuration, as SHA-256 hashes with a name; tokens made
        /// through the API live in the database.
        public var apiTokens: [(name: String, sha256: String)] = []
        /// false: no authentication at all (`--insecure-no-auth`).
        public var authenticate = true
        /// HTTPS: a PEM certificate chain and its private key.
        public var tlsCertificate: String?
        public var tlsKey: String?
        public var configuration = ManagerConfiguration()
        public var actors = ActorConfiguration()

        public init(databasePath: String, mqtt: MQTTConfiguration, topics: Topics) {
            openStore = { try SQLiteStore(path: databasePath) }
            self.mqtt = mqtt
            self.topics = topics
        }
    }

    let options: Options
    let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until cancelled or until the HTTP server fails.
    public func run() async throws {
        let store = try options.openStore()
        var mqtt = options.mqtt
        let topics = options.topics
        mqtt.isBulkTopic = { MQTTControlBus.isBulk($0, topics: topics) }
        let client = try MQTTClient(mqtt)
        let bus = MQTTControlBus(client: client, topics: options.topics, logger: logger)
        var configuration = options.configuration
        configuration.actors = options.actors
        let service = TaskService(store: store, bus: bus, configuration: configuration, logger: logger)
        try await service.recover()
        let actors = ActorService(tasks: service)
        // The API serves while the broker is away (a manager started before its broker, or
        // during a broker restart): the client connects, and reconnects, on its own thread.
        try client.start()
        client.reportFirstConnection(logger: logger)

        let tokens = options.authenticate ? try APITokens(store: store, configured: options.apiTokens) : nil
        let api = ManagerAPI(service: service, actors: actors, tokens: tokens)
        var server = HTTPServerBuilder.http1()
        var scheme = "http"
        if let cert = options.tlsCertificate, let key = options.tlsKey {
            let tls: TLSConfiguration
            do {
                tls = TLSConfiguration.makeServerConfiguration(certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                                                               privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            } catch {
                throw PropellerError(.invalidArgument, "TLS certificate \(cert) or key \(key): \(error)")
            }
            server = try .tls(.http1(), tlsConfiguration: tls)
            scheme = "https"
        }
        let app = Application(router: api.router(), server: server,
                              configuration: .init(address: .hostname(options.host, port: options.port), serverName: "propeller-manager"),
                              onServerRunning: { [logger, options, scheme] _ in
                                  logger.notice("manager listening", metadata: ["address": "\(scheme)://\(options.host):\(options.port)"])
                              }, logger: logger)
        let interval = options.configuration.livenessInterval
        let busService = LoopService { try await bus.run(service: service) }
        let liveness = LoopService {
            while !Task.isCancelled {
                try await Task.sleep(for: interval / 2)
                await service.checkLiveness(brokerLink: (client.isConnected, client.connectionCount))
            }
        }
        // The autoscaler and the workers' health checks.
        let autoscaler = LoopService {
            while !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(500))
                await service.autoscale()
            }
        }
        // SIGTERM/SIGINT: the HTTP server finishes requests in flight, then the loops stop.
        let group = ServiceGroup(configuration: .init(services: [.init(service: app), .init(service: busService), .init(service: liveness), .init(service: autoscaler)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        defer { client.disconnect() }
        try await group.run()
    }
}
