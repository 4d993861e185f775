#if canImport(Glibc)
import Glibc
#endif
import CMosquitto
import Dispatch
import Foundation
import Logging
import PropellerCore
import Synchronization

/// An MQTT message as received.
public struct MQTTMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int32
    public var retain: Bool
}

/// How to reach the broker and who we are.
public struct MQTTConfiguration: Sendable {
    public var host: String
    public var port: Int32
    /// Further brokers of the same cluster (same TLS settings and credentials): when the
    /// connection is lost, the client moves on to the next address in turn.
    public var fallbacks: [(host: String, port: Int32)] = []
    public var clientID: String
    public var username: String?
    public var password: String?
    public var keepaliveSeconds: Int32 = 30
    /// A persistent session: the broker keeps our subscriptions and queues QoS 1 messages for us
    /// while we are away.
    public var persistentSession = true
    /// The Last Will, published by the broker when we vanish without saying goodbye.
    public var will: (topic: String, payload: [UInt8], qos: Int32, retain: Bool)?
    /// Reconnect backoff: doubles from `min` to `max` seconds.
    public var reconnectDelay: (min: UInt32, max: UInt32) = (1, 30)
    /// TLS (an `mqtts://` URL): the CA file that signs the broker's certificate (nil: the
    /// system's CA bundle), and an optional client certificate and key. The broker's
    /// certificate and host name are always verified.
    public var tls: TLS?
    /// Topics whose messages go to ``MQTTClient/bulkMessages`` instead of
    /// ``MQTTClient/messages`` (the manager's task logs), or nil for none.
    public var isBulkTopic: (@Sendable (String) -> Bool)?
    /// The most bytes of received messages waiting to be read in `messages`, and in
    /// `bulkMessages`; beyond them, new messages are dropped (see ``MQTTInbox``).
    public var inboxLimitBytes = 256 << 20
    public var bulkInboxLimitBytes = 32 << 20

    public struct TLS: Sendable {
        public var caFile: String?
        public var certFile: String?
        public var keyFile: String?
        public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    /// Every broker address, the first one first.
    public var addresses: [(host: String, port: Int32)] { [(host, port)] + fallbacks }

    /// Parses a comma-separated list of broker URLs of one cluster (`tcp://a:1883,tcp://b:1883`):
    /// all plain or all TLS.
    public init(urls: String, clientID: String) throws {
        let parts = urls.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let first = parts.first else { throw PropellerError(.invalidArgument, "no MQTT URL given") }
        try self.init(url: first, clientID: clientID)
        for part in parts.dropFirst() {
            let other = try MQTTConfiguration(url: part, clientID: clientID)
            guard (other.tls == nil) == (tls == nil) else {
                throw PropellerError(.invalidArgument, "invalid MQTT URLs \"\(urls)\": mix of plain and TLS brokers; one cluster is all one or all the other")
            }
            fallbacks.append((other.host, other.port))
        }
    }

    /// Parses `tcp://host:port`, `mqtt://host:port` (port 1883 by default) and
    /// `mqtts://host:port` (TLS, port 8883 by default).
    public init(url: String, clientID: String) throws {
        let schemes: [(String, Int32, Bool)] = [("tcp://", 1883, false), ("mqtt://", 1883, false), ("mqtts://", 8883, true), ("ssl://", 8883, true)]
        guard let (scheme, defaultPort, secure) = schemes.first(where: { url.hasPrefix($0.0) }) else {
            throw PropellerError(.invalidArgument, "invalid MQTT URL \"\(url)\": expected tcp://, mqtt:// or mqtts://HOST[:PORT]")
        }
        var rest = String(url.dropFirst(scheme.count))
        if rest.hasSuffix("/") { rest.removeLast() }
        if rest.contains("@") || rest.contains("/") || rest.isEmpty {
            throw PropellerError(.invalidArgument, "invalid MQTT URL \"\(url)\": expected only HOST[:PORT] after the scheme (credentials go in the config file, not the URL)")
        }
        var host = rest
        var port = defaultPort
        if rest.hasPrefix("[") {  // [::1]:1883
            guard let close = rest.firstIndex(of: "]") else { throw PropellerError(.invalidArgument, "invalid MQTT URL \"\(url)\"") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int32(after.dropFirst()), p > 0, p < 65536 else { throw PropellerError(.invalidArgument, "invalid port in MQTT URL \"\(url)\"") }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int32(rest[rest.index(after: colon)...]), p > 0, p < 65536 else { throw PropellerError(.invalidArgument, "invalid port in MQTT URL \"\(url)\"") }
            port = p
        }
        self.init(host: host, port: port, clientID: clientID)
        if secure { tls = TLS() }
    }

    public init(host: String = "127.0.0.1", port: Int32 = 1883, clientID: String) {
        self.host = host
        self.port = port
        self.clientID = clientID
    }
}

/// An MQTT 3.1.1 client over libmosquitto's threaded loop: connects, reconnects with backoff,
/// resubscribes after every reconnect, and hands messages out as an `AsyncStream`.
// @unchecked: the only non-Sendable member is the libmosquitto handle, which is safe to use from
// any thread once its own network thread runs (threaded mode: its calls lock internally).
public final class MQTTClient: @unchecked Sendable {
    private let handle: OpaquePointer
    private let context: Context
    public let configuration: MQTTConfiguration
    /// Every message on the client's subscriptions but the bulk ones, in arrival order.
    public var messages: MQTTInbox { context.inbox }
    /// Messages on the configuration's bulk topics, in arrival order.
    public var bulkMessages: MQTTInbox { context.bulkInbox }

    final class Context: Sendable {
        struct State {
            var connected = false
            var subscriptions: [String: Int32] = [:]
            var connectWaiters: [Int: CheckedContinuation<Void, any Error>] = [:]
            var cancelledWaiters = Set<Int>()
            var nextWaiter = 0
            var lastError: Int32 = 0
            /// The last error libmosquitto logged (a TLS handshake failure, say), for messages.
            var lastLoggedError: String?
            var connections = 0
            /// QoS 1 publishes the broker has not acknowledged yet, by message id.
            var unacknowledged = Set<Int32>()
            /// PUBACKs that arrived before `publish` recorded their id.
            var earlyAcknowledgements = Set<Int32>()
            /// Publishers waiting for the broker to acknowledge something.
            var acknowledgementWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        }
        let state = Locked(State())
        let inbox: MQTTInbox
        let bulkInbox: MQTTInbox
        let isBulkTopic: (@Sendable (String) -> Bool)?
        /// Set before a deliberate disconnect: the network thread ends instead of reconnecting.
        let stopping = Locked(false)
        /// Signalled when the network thread has ended.
        let loopEnded = DispatchSemaphore(value: 0)
        let loopStarted = Locked(false)
        init(_ configuration: MQTTConfiguration) {
            inbox = MQTTInbox(limitBytes: configuration.inboxLimitBytes)
            bulkInbox = MQTTInbox(limitBytes: configuration.bulkInboxLimitBytes)
            isBulkTopic = configuration.isBulkTopic
        }

        func deliver(_ message: MQTTMessage) {
            if let isBulkTopic, isBulkTopic(message.topic) { bulkInbox.deliver(message) } else { inbox.deliver(message) }
        }
    }

    private static let libraryInitialized: Bool = {
        mosquitto_lib_init()
        return true
    }()

    public init(_ configuration: MQTTConfiguration) throws {
        _ = Self.libraryInitialized
        self.configuration = configuration
        context = Context(configuration)
        guard let handle = mosquitto_new(configuration.clientID, !configuration.persistentSession, Unmanaged.passUnretained(context).toOpaque()) else {
            throw PropellerError(.systemCall, "mqtt: mosquitto_new failed for client \(configuration.clientID)")
        }
        self.handle = handle
        _ = mosquitto_reconnect_delay_set(handle, configuration.reconnectDelay.min, configuration.reconnectDelay.max, true)
        // Control messages are small and latency matters: without TCP_NODELAY, Nagle's
        // algorithm and delayed ACKs hold a start or a result back for up to 40 ms.
        _ = mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
        if let username = configuration.username {
            _ = mosquitto_username_pw_set(handle, username, configuration.password)
        }
        if let tls = configuration.tls {
            let rc = mosquitto_tls_set(handle, tls.caFile, tls.caFile == nil ? "/etc/ssl/certs" : nil, tls.certFile, tls.keyFile, nil)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw Self.error("set up TLS (CA \(tls.caFile ?? "/etc/ssl/certs"))", rc) }
            _ = mosquitto_tls_insecure_set(handle, false)
        }
        if let will = configuration.will {
            let rc = will.payload.withUnsafeBytes { mosquitto_will_set(handle, will.topic, Int32($0.count), $0.baseAddress, will.qos, will.retain) }
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw Self.error("set will", rc) }
        }
        mosquitto_connect_callback_set(handle) { mosq, obj, rc in
            guard let obj else { return }
            let ctx = Unmanaged<Context>.fromOpaque(obj).takeUnretainedValue()
            // Resubscribe before anyone waiting for the connection goes on.
            for (filter, qos) in ctx.subscriptionsIfAccepted(rc: rc) { _ = mosquitto_subscribe(mosq, nil, filter, qos) }
            ctx.wakeWaiters(refusal: rc == 0 ? nil : rc)
        }
        mosquitto_log_callback_set(handle) { _, obj, level, text in
            guard let obj, let text, level & Int32(MOSQ_LOG_ERR) != 0 else { return }
            let line = String(cString: text)
            Unmanaged<Context>.fromOpaque(obj).takeUnretainedValue().state.withLock { $0.lastLoggedError = line }
        }
        mosquitto_publish_callback_set(handle) { _, obj, mid in
            guard let obj else { return }
            let waiters = Unmanaged<Context>.fromOpaque(obj).takeUnretainedValue().state.withLock { s in
                if s.unacknowledged.remove(mid) == nil { s.earlyAcknowledgements.insert(mid) }
                defer { s.acknowledgementWaiters.removeAll() }
                return Array(s.acknowledgementWaiters.values)
            }
            for w in waiters { w.resume() }
        }
        mosquitto_disconnect_callback_set(handle) { _, obj, _ in
            guard let obj else { return }
            Unmanaged<Context>.fromOpaque(obj).takeUnretainedValue().state.withLock { $0.connected = false }
        }
        mosquitto_message_callback_set(handle) { _, obj, message in
            guard let obj, let message else { return }
            let m = message.pointee
            let topic = m.topic.map { String(cString: $0) } ?? ""
            let payload = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(m.payloadlen))) } ?? []
            Unmanaged<Context>.fromOpaque(obj).takeUnretainedValue().deliver(MQTTMessage(topic: topic, payload: payload, qos: m.qos, retain: m.retain))
        }
    }

    deinit {
        stopLoop()
        mosquitto_destroy(handle)
        context.inbox.finish()
        context.bulkInbox.finish()
    }

    /// Connects (or fails within `timeout`); afterwards the client reconnects by itself.
    public func connect(timeout: Duration = .seconds(10)) async throws {
        try start()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [context] in try await context.waitForConnection() }
            group.addTask {
                try await Task.sleep(for: timeout)
                let last = self.context.state.withLock { $0.lastLoggedError }
                throw PropellerError(.resourceExhausted, "mqtt: no connection to \(self.configuration.host):\(self.configuration.port) within \(DurationParsing.format(timeout))"
                                     + (last.map { " (last error: \($0))" } ?? ""))
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Starts connecting and returns at once: the client's thread connects, and reconnects after
    /// every loss, for as long as it runs (``isConnected`` says when it is). Throws only for what
    /// no retry can fix (a TLS setup error, an invalid host).
    public func start() throws {
        let rc = mosquitto_connect_async(handle, configuration.host, configuration.port, configuration.keepaliveSeconds)
        if rc != MOSQ_ERR_SUCCESS.rawValue && rc != MOSQ_ERR_ERRNO.rawValue {
            // A TLS failure says only "A TLS error occurred"; OpenSSL's reason went to the log.
            let detail = context.state.withLock { $0.lastLoggedError }.map { " (\($0))" } ?? ""
            throw PropellerError(.systemCall, Self.error("connect to \(configuration.host):\(configuration.port)", rc).message + detail)
        }
        startLoop()
    }

    /// Logs once the first connection is made, and a warning every `every` until then: for a
    /// daemon that starts without waiting for its broker.
    public func reportFirstConnection(logger: Logger, every: Duration = .seconds(30)) {
        let broker = "\(configuration.host):\(configuration.port)"
        Task { [self] in
            let started = ContinuousClock.now
            var warned = started
            while !isConnected {
                try? await Task.sleep(for: .milliseconds(100))
                if ContinuousClock.now - warned >= every {
                    warned = .now
                    let last = context.state.withLock { $0.lastLoggedError }
                    logger.warning("no connection to the broker yet: retrying", metadata: ["broker": "\(broker)", "for": "\(DurationParsing.format(warned - started))", "last_error": "\(last ?? "-")"])
                }
            }
            logger.notice("connected to the broker", metadata: ["broker": "\(broker)"])
        }
    }

    public var isConnected: Bool { context.state.withLock { $0.connected } }

    /// How many times the client has connected (1 + reconnects).
    public var connectionCount: Int { context.state.withLock { $0.connections } }

    /// Subscribes now if connected, and again after every reconnect.
    public func subscribe(_ filter: String, qos: Int32 = 1) throws {
        let connected = context.state.withLock { s -> Bool in
            s.subscriptions[filter] = qos
            return s.connected
        }
        if connected {
            let rc = mosquitto_subscribe(handle, nil, filter, qos)
            guard rc == MOSQ_ERR_SUCCESS.rawValue || rc == MOSQ_ERR_NO_CONN.rawValue else { throw Self.error("subscribe \(filter)", rc) }
        }
    }

    /// Publishes `payload` (QoS 1 by default: at least once; handlers must be idempotent).
    public func publish(_ topic: String, _ payload: [UInt8], qos: Int32 = 1, retain: Bool = false) throws {
        var mid: Int32 = 0
        let rc = payload.withUnsafeBytes { mosquitto_publish(handle, &mid, topic, Int32($0.count), $0.baseAddress, qos, retain) }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw Self.error("publish to \(topic)", rc) }
        if qos > 0 {
            context.state.withLock { s in
                if s.earlyAcknowledgements.remove(mid) == nil { s.unacknowledged.insert(mid) }
            }
        }
    }

    /// QoS 1 messages published and not yet acknowledged by the broker.
    public var unacknowledgedPublishes: Int { context.state.withLock { $0.unacknowledged.count } }

    /// Waits until fewer than `limit` publishes are unacknowledged: a publisher of many large
    /// messages paces itself with this, so neither its memory nor the broker's queues overflow.
    public func waitForAcknowledgements(below limit: Int, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while unacknowledgedPublishes >= limit {
            if ContinuousClock.now > deadline {
                // Lost with a dropped connection: libmosquitto resends on reconnect; stop waiting.
                context.state.withLock { s in
                    s.unacknowledged.removeAll()
                    s.earlyAcknowledgements.removeAll()
                }
                throw PropellerError(.resourceExhausted, "mqtt: the broker acknowledged nothing for \(DurationParsing.format(timeout))")
            }
            // Woken by the next PUBACK (a sleep-and-poll loop kept the link idle between
            // wake-ups: the pacing, not the bytes, bounded the proxy's throughput), or after
            // 50 ms so that the deadline is noticed.
            await context.nextAcknowledgement(whileAtLeast: limit, atMost: .milliseconds(50))
        }
    }

    /// Stops a subscription (and does not renew it after a reconnect).
    public func unsubscribe(_ filter: String) {
        let connected = context.state.withLock { s -> Bool in
            s.subscriptions[filter] = nil
            return s.connected
        }
        if connected { _ = mosquitto_unsubscribe(handle, nil, filter) }
    }

    /// Says goodbye (no Last Will) and stops the network loop.
    public func disconnect() {
        stopLoop()
    }

    /// The network thread: libmosquitto's loop, which reconnects by itself after a lost
    /// connection but returns for good on what it deems fatal, a TLS error included (an
    /// OpenSSL 3 "unexpected eof" when a TLS broker dies). Then this thread reconnects, with the
    /// same backoff, so a restarted TLS broker is rejoined like a plain one.
    private func startLoop() {
        let first = context.loopStarted.withLock { started -> Bool in
            defer { started = true }
            return !started
        }
        guard first else { return }
        _ = mosquitto_threaded_set(handle, true)
        // The handle is safe to use from this thread in threaded mode (see the class comment).
        nonisolated(unsafe) let handle = self.handle
        let context = self.context
        let delays = configuration.reconnectDelay
        if !configuration.fallbacks.isEmpty {
            let (addresses, keepalive) = (configuration.addresses, configuration.keepaliveSeconds)
            let thread = Thread { Self.failoverLoop(handle, context, addresses: addresses, keepalive: keepalive, delays: delays) }
            thread.name = "mqtt-" + configuration.clientID.prefix(10)
            thread.start()
            return
        }
        let thread = Thread {
            var delay = delays.min
            while !context.stopping.withLock({ $0 }) {
                let rc = mosquitto_loop_forever(handle, 1000, 1)
                if context.stopping.withLock({ $0 }) { break }
                let message = mosquitto_strerror(rc).map { String(cString: $0) } ?? "error \(rc)"
                context.state.withLock { s in
                    s.connected = false
                    s.lastLoggedError = s.lastLoggedError ?? message
                }
                for _ in 0..<(delay * 10) where !context.stopping.withLock({ $0 }) { usleep(100_000) }
                delay = min(delay * 2, delays.max)
                if mosquitto_reconnect(handle) == MOSQ_ERR_SUCCESS.rawValue { delay = delays.min }
            }
            context.loopEnded.signal()
        }
        thread.name = "mqtt-" + configuration.clientID.prefix(10)
        thread.start()
    }

    /// The network thread with several brokers: the same loop as libmosquitto's own, but a lost
    /// connection moves on to the next broker at once; the backoff applies only after every
    /// broker has failed in a row.
    private static func failoverLoop(_ handle: OpaquePointer, _ context: Context, addresses: [(host: String, port: Int32)], keepalive: Int32,
                                     delays: (min: UInt32, max: UInt32)) {
        var index = 0
        var failures = 0
        var delay = delays.min
        while !context.stopping.withLock({ $0 }) {
            let rc = mosquitto_loop(handle, 1000, 1)
            if rc == MOSQ_ERR_SUCCESS.rawValue { continue }
            if context.stopping.withLock({ $0 }) { break }
            let message = mosquitto_strerror(rc).map { String(cString: $0) } ?? "error \(rc)"
            context.state.withLock { s in
                s.connected = false
                s.lastLoggedError = s.lastLoggedError ?? message
            }
            failures += 1
            if failures >= addresses.count {
                for _ in 0..<(delay * 10) where !context.stopping.withLock({ $0 }) { usleep(100_000) }
                delay = min(delay * 2, delays.max)
                failures = 0
            } else {
                usleep(100_000)
            }
            index = (index + 1) % addresses.count
            let next = addresses[index]
            if mosquitto_connect(handle, next.host, next.port, keepalive) == MOSQ_ERR_SUCCESS.rawValue {
                delay = delays.min
                failures = 0
            }
        }
        context.loopEnded.signal()
    }

    /// Says goodbye and waits for the network thread to end.
    private func stopLoop() {
        let wasStopping = context.stopping.withLock { s -> Bool in
            defer { s = true }
            return s
        }
        guard !wasStopping else { return }
        mosquitto_disconnect(handle)
        if context.loopStarted.withLock({ $0 }) { _ = context.loopEnded.wait(timeout: .now() + 5) }
    }

    /// Test hook, not for production: cuts the TCP connection without an MQTT DISCONNECT, as a
    /// crash or a network failure would, so the broker publishes the Last Will and the client
    /// reconnects.
    public func dropConnectionForTesting() {
        let fd = mosquitto_socket(handle)
        if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    static func error(_ what: String, _ rc: Int32) -> PropellerError {
        let message = mosquitto_strerror(rc).map { String(cString: $0) } ?? "error \(rc)"
        return PropellerError(rc == MOSQ_ERR_NO_CONN.rawValue ? .resourceExhausted : .systemCall, "mqtt: \(what): \(message)")
    }
}

extension MQTTClient.Context {
    /// Returns at the next PUBACK, at once when fewer than `limit` publishes are unacknowledged,
    /// or after `maxWait`.
    func nextAcknowledgement(whileAtLeast limit: Int, atMost maxWait: Duration) async {
        let id = state.withLock { s -> Int in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let registered = state.withLock { s -> Bool in
                guard s.unacknowledged.count >= limit else { return false }
                s.acknowledgementWaiters[id] = c
                return true
            }
            guard registered else { return c.resume() }
            Task {
                try? await Task.sleep(for: maxWait)
                self.state.withLock { $0.acknowledgementWaiters.removeValue(forKey: id) }?.resume()
            }
        }
    }

    /// On CONNACK: the subscriptions to renew when the broker accepted us (rc 0), else none.
    func subscriptionsIfAccepted(rc: Int32) -> [String: Int32] {
        state.withLock { s in
            guard rc == 0 else {
                s.lastError = rc
                return [:]
            }
            s.connected = true
            s.connections += 1
            return s.subscriptions
        }
    }

    /// Resumes whoever waits for the connection: on success, or with the broker's refusal (bad
    /// credentials, not authorized), which retrying would not change.
    func wakeWaiters(refusal: Int32? = nil) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            guard s.connected || refusal != nil else { return [] }
            defer { s.connectWaiters = [:] }
            return Array(s.connectWaiters.values)
        }
        guard let refusal else {
            for w in waiters { w.resume() }
            return
        }
        let reason = mosquitto_connack_string(refusal).map { String(cString: $0) } ?? "code \(refusal)"
        for w in waiters { w.resume(throwing: PropellerError(.permissionDenied, "mqtt: the broker refused the connection: \(reason)")) }
    }

    /// Returns once connected; a cancelled wait ends with CancellationError.
    func waitForConnection() async throws {
        let id = state.withLock { s -> Int in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                enum Outcome { case connected, cancelled, wait }
                let outcome = state.withLock { s -> Outcome in
                    if s.connected { return .connected }
                    if s.cancelledWaiters.remove(id) != nil { return .cancelled }
                    s.connectWaiters[id] = c
                    return .wait
                }
                switch outcome {
                case .connected: c.resume()
                case .cancelled: c.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                if let c = s.connectWaiters.removeValue(forKey: id) { return c }
                s.cancelledWaiters.insert(id)
                return nil
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
