import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import PropellerCore
import PropellerTracing
import PropellerDaemon
import PropellerMQTT
import ServiceLifecycle

/// Everything `propeller manager` runs: store, task service, MQTT bus, liveness monitor, REST.
public struct ManagerServer: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 7070
        /// Opens the store: SQLite at a path by default, or what `--store` names.
        public var openStore: @Sendable () throws -> any ManagerStores
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
        /// Where tasks' spans go (`--otlp-endpoint`); the exporter's service runs with the server.
        public var traces = Traces()
        public var tracingService: (any Service)?
        public var actors = ActorConfiguration()
        /// Seals and opens secrets (`--secrets-key-file`); nil: the secrets API refuses.
        public var secretBox: SecretBox?
        /// A PEM file of certificate authorities to trust when forwarding to a leader over https
        /// (nil: the system's roots).
        public var peerCA: String?
        /// Audit entries older than this are removed (nil: kept for ever).
        public var auditRetention: Duration?
        /// Tokens made through the API are forgotten this long after they were revoked or expired.
        public var tokenRetention: Duration = .seconds(7 * 86400)
        /// How proplet identities made through the API reach the broker (nil: they cannot be;
        /// proplets are provisioned in the broker's files).
        public var brokerAdmin: BrokerAdministration?
        /// The broker as a proplet added through the API reaches it (its config file's `mqtt`),
        /// and the CA that signs the broker's certificate there.
        public var propletBrokerURL = "mqtt://127.0.0.1:1883"
        public var propletBrokerCA: String?
        /// Leadership among managers that share the store (nil: this manager is alone).
        public var leadership: (@Sendable (any ManagerStores) throws -> (any Leadership)?)?

        public init(databasePath: String, mqtt: MQTTConfiguration, topics: Topics) {
            openStore = { try SQLiteStore(path: databasePath) }
            self.mqtt = mqtt
            self.topics = topics
        }
    }

    /// `--broker-admin`: mosquitto's dynamic-security plugin, or a NATS users file reloaded by
    /// signalling the servers whose pid files are named.
    public enum BrokerAdministration: Sendable, Equatable {
        case dynamicSecurity
        case natsUsersFile(path: String, pidFiles: [String])
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
        let (server, scheme) = try httpServer()
        let onRunning: @Sendable (any Channel) async -> Void = { [logger, options] _ in
            logger.notice("manager listening", metadata: ["address": "\(scheme)://\(options.host):\(options.port)"])
        }
        let configuration = ApplicationConfiguration(address: .hostname(options.host, port: options.port), serverName: "propeller-manager")
        let tracing: [ServiceGroupConfiguration.ServiceConfiguration] = options.tracingService.map { [.init(service: $0)] } ?? []
        if let leadership = try options.leadership?(store) {
            // Several managers share the store: this one leads when it holds the lease.
            let node = try ManagerNode(leadership: leadership, store: store, options: options, logger: logger)
            let app = Application(responder: node.responder(), server: server, configuration: configuration, onServerRunning: onRunning, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [.init(service: app), .init(service: LoopService { await node.run() })] + tracing,
                                                          gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            defer { Task { try? await node.http.shutdown() } }
            try await group.run()
            return
        }
        let term = try await LeaderTerm(store: store, options: options, lease: nil, cluster: nil, logger: logger)
        let app = Application(responder: term.responder, server: server, configuration: configuration, onServerRunning: onRunning, logger: logger)
        // SIGTERM/SIGINT: the HTTP server finishes requests in flight, then the loops stop.
        let group = ServiceGroup(configuration: .init(services: [.init(service: app)] + term.loops().map { .init(service: LoopService($0)) } + tracing,
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        defer { term.client.disconnect() }
        try await group.run()
        await term.service.flush()  // what was decided last reaches the store before the exit
        term.audit.flush()
    }

    private func httpServer() throws -> (HTTPServerBuilder, String) {
        guard let cert = options.tlsCertificate, let key = options.tlsKey else { return (.http1(), "http") }
        let tls: TLSConfiguration
        do {
            tls = TLSConfiguration.makeServerConfiguration(certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                                                           privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        } catch {
            throw PropellerError(.invalidArgument, "TLS certificate \(cert) or key \(key): \(error)")
        }
        return (try .tls(.http1(), tlsConfiguration: tls), "https")
    }
}

/// Everything that decides, for as long as this manager leads: the MQTT client, the task
/// service rebuilt from the store, the API on it and the loops (proplet messages, liveness,
/// autoscaler). One manager alone has one term for its whole life; among several, a term
/// starts when the lease is taken and ends when it is lost.
final class LeaderTerm: Sendable {
    let client: MQTTClient
    let bus: MQTTControlBus
    let service: TaskService
    let responder: RouterResponder<APIContext>
    let audit: AuditLog
    let lease: LeaderLease?
    let interval: Duration
    let store: any ManagerStores
    let tokens: APITokens?
    let auditRetention: Duration?
    let tokenRetention: Duration
    let logger: Logger

    init(store: any ManagerStores, options: ManagerServer.Options, lease: LeaderLease?, cluster: (any ClusterView)?, logger: Logger) async throws {
        var mqtt = options.mqtt
        let topics = options.topics
        mqtt.isBulkTopic = { MQTTControlBus.isBulk($0, topics: topics) }
        client = try MQTTClient(mqtt)
        var dynamicSecurity: MosquittoDynamicSecurity?
        var authority: (any BrokerAuthority)?
        switch options.brokerAdmin {
        case .dynamicSecurity:
            let client = client
            dynamicSecurity = MosquittoDynamicSecurity(topics: topics) { try client.publish($0, $1) }
            authority = dynamicSecurity
        case .natsUsersFile(let path, let pidFiles):
            authority = NATSUsersFile(path: path, pidFiles: pidFiles, topics: topics)
        case nil:
            break
        }
        bus = MQTTControlBus(client: client, topics: options.topics, logger: logger, dynamicSecurity: dynamicSecurity)
        var configuration = options.configuration
        configuration.actors = options.actors
        interval = configuration.livenessInterval
        self.lease = lease
        self.store = store
        self.logger = logger
        auditRetention = options.auditRetention
        tokenRetention = options.tokenRetention
        let secrets = options.secretBox.map { SecretVault(store: store, box: $0) }
        service = TaskService(store: store, bus: bus, configuration: configuration, lease: lease, secrets: secrets, traces: options.traces, logger: logger)
        try await service.recover()
        let actors = ActorService(tasks: service)
        // The API serves while the broker is away (a manager started before its broker, or
        // during a broker restart): the client connects, and reconnects, on its own thread.
        try client.start()
        client.reportFirstConnection(logger: logger)
        let tokens = options.authenticate ? try APITokens(store: store, configured: options.apiTokens) : nil
        self.tokens = tokens
        var api = ManagerAPI(service: service, actors: actors, tokens: tokens)
        await service.setTokens(tokens)
        api.secrets = secrets
        api.cluster = cluster
        audit = AuditLog(store: store) { error in logger.error("the store refused audit entries (kept for the next try)", metadata: ["error": "\(error)"]) }
        api.audit = audit
        let namespaces = try Namespaces(store: store)
        api.namespaces = namespaces
        api.nonces = ActorNonces(store: store)
        api.grants = store
        if let authority {
            let identities = PropletIdentities(store: store, broker: authority, brokerURL: options.propletBrokerURL, brokerCA: options.propletBrokerCA,
                                               domain: options.topics.domain, channel: options.topics.channel)
            api.propletIdentities = identities
            let revoked = try identities.revoked()
            service.revokedProplets.withLock { $0 = revoked }
            let held = try identities.restrictions()
            service.heldToNamespaces.withLock { $0 = held }
        }
        await service.setQuotas(namespaces.quotas())
        responder = api.router().buildResponder()
    }

    /// Applies the retention settings once (the leader's loop calls it).
    func retain(now: Double = WallClock.now()) {
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        do {
            if let auditRetention {
                let removed = try store.pruneAudit(before: now - seconds(auditRetention), at: now)
                if removed > 0 { logger.notice("audit entries past their retention removed", metadata: ["count": "\(removed)", "retention": "\(auditRetention)"]) }
            }
            if let tokens {
                let removed = try tokens.prune(endedBefore: now - seconds(tokenRetention))
                if removed > 0 { logger.info("revoked and expired API tokens forgotten", metadata: ["count": "\(removed)"]) }
            }
        } catch {
            logger.error("retention: the store refused a prune (tried again later)", metadata: ["error": "\(error)"])
        }
    }

    /// The loops that run while the term lasts.
    func loops() -> [@Sendable () async throws -> Void] {
        let (bus, service, client, interval) = (bus, service, client, interval)
        return [
            { try await bus.run(service: service) },
            {
                while !Task.isCancelled {
                    try await Task.sleep(for: interval / 2)
                    await service.checkLiveness(brokerLink: (client.isConnected, client.connectionCount))
                }
            },
            // Retention: old audit entries, and tokens long revoked or expired.
            { [self] in
                let shortest = min(auditRetention ?? .seconds(3600), tokenRetention)
                let every = max(.seconds(1), min(.seconds(3600), shortest / 10))
                while !Task.isCancelled {
                    retain()
                    try await Task.sleep(for: every)
                }
            },
            // The autoscaler and the workers' health checks.
            {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(500))
                    await service.autoscale()
                }
            },
        ]
    }
}
