import Foundation
import PropellerCore
import PropellerMQTT
import PropellerTestSupport
import Testing

/// The MQTT client against a real mosquitto on loopback.
@Suite("MQTT client")
struct MQTTClientTests {
    func client(_ broker: MosquittoServer, _ id: String, will: (String, [UInt8])? = nil) throws -> MQTTClient {
        var config = MQTTConfiguration(port: Int32(broker.port), clientID: id)
        config.reconnectDelay = (1, 2)
        if let will { config.will = (will.0, will.1, 1, false) }
        return try MQTTClient(config)
    }

    /// The next message on `client` within `seconds`, or nil.
    func next(_ client: MQTTClient, within seconds: Double = 5) async -> MQTTMessage? {
        await withTaskGroup(of: MQTTMessage?.self) { group in
            group.addTask {
                var iterator = client.messages.makeAsyncIterator()
                return await iterator.next()
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    @Test func publishAndSubscribeBinaryPayloads() async throws {
        let broker = try MosquittoServer()
        let sub = try client(broker, "sub-\(UUID().uuidString.prefix(8))")
        let pub = try client(broker, "pub-\(UUID().uuidString.prefix(8))")
        try await sub.connect()
        try sub.subscribe("m/d/c/ch/control/#")
        try await pub.connect()
        try await Task.sleep(for: .milliseconds(200))  // the SUBACK
        let payload: [UInt8] = Array(0...255) + Array(repeating: 0, count: 70_000)
        try pub.publish("m/d/c/ch/control/proplet/alive", payload)
        let message = await next(sub)
        #expect(message?.topic == "m/d/c/ch/control/proplet/alive")
        #expect(message?.payload == payload)
        #expect(message?.qos == 1)
    }

    /// A reader that does not keep up costs at most the inbox limit: one flooding topic is
    /// dropped beyond it, and bulk topics have an inbox of their own, so the control messages
    /// behind a flood of them still arrive.
    @Test func aFloodIsBoundedAndBulkTopicsCannotCrowdOutTheRest() async throws {
        let broker = try MosquittoServer()
        var config = MQTTConfiguration(port: Int32(broker.port), clientID: "sub-\(UUID().uuidString.prefix(8))")
        config.inboxLimitBytes = 1 << 20
        config.bulkInboxLimitBytes = 1 << 20
        config.isBulkTopic = { $0.hasSuffix("/logs") }
        let sub = try MQTTClient(config)
        let pub = try client(broker, "pub-\(UUID().uuidString.prefix(8))")
        try await sub.connect()
        try sub.subscribe("flood/#")
        try await pub.connect()
        try await Task.sleep(for: .milliseconds(200))
        let block = [UInt8](repeating: 7, count: 64 << 10)
        for _ in 0..<64 { try pub.publish("flood/t/logs", block) }  // 4 MiB of logs, nobody reading
        try pub.publish("flood/alive", Array("beat".utf8))
        try await pub.waitForAcknowledgements(below: 1)
        try await Task.sleep(for: .milliseconds(500))
        #expect(sub.bulkMessages.queuedBytes <= 1 << 20)
        #expect(sub.bulkMessages.droppedMessages > 0)
        // The control message is first in its own inbox, not behind 4 MiB of logs.
        let first = await next(sub)
        #expect(first?.topic == "flood/alive")
        #expect(sub.messages.droppedMessages == 0)
        for _ in 0..<40 { try pub.publish("flood/x", block) }  // 2.5 MiB on a plain topic
        try await pub.waitForAcknowledgements(below: 1)
        try await Task.sleep(for: .milliseconds(500))
        #expect(sub.messages.queuedBytes <= 1 << 20)
        #expect(sub.messages.droppedMessages > 0)
    }

    /// TLS with client certificates: a client with a certificate from the broker's CA gets in
    /// (and gets back in after the broker dies, which ends libmosquitto's own loop with a TLS
    /// error); one without a certificate, or one that does not trust the broker's CA, does not,
    /// and says why.
    @Test func tlsWithClientCertificatesAndARestartedBroker() async throws {
        let dir = try TempDirectory("propeller-mqtt-tls")
        defer { dir.remove() }
        let ca = try TestCA(dir.path + "/ca")
        let server = try ca.issue("broker")
        let clientCert = try ca.issue("client")
        let rogue = try TestCA(dir.path + "/rogue", name: "Rogue CA")
        let broker = try MosquittoServer(settings: ["allow_anonymous true"],
                                         listener: ["cafile \(ca.certificate)", "certfile \(server.certificate)", "keyfile \(server.key)", "require_certificate true"])
        func tlsClient(_ id: String, caFile: String, cert: (certificate: String, key: String)?) throws -> MQTTClient {
            var config = try MQTTConfiguration(url: "mqtts://127.0.0.1:\(broker.port)", clientID: id)
            config.tls = .init(caFile: caFile, certFile: cert?.certificate, keyFile: cert?.key)
            config.reconnectDelay = (1, 1)
            return try MQTTClient(config)
        }
        let good = try tlsClient("good", caFile: ca.certificate, cert: clientCert)
        try await good.connect(timeout: .seconds(5))
        try good.subscribe("t/#")

        let noCert = try tlsClient("nocert", caFile: ca.certificate, cert: nil)
        await #expect(throws: PropellerError.self) { try await noCert.connect(timeout: .seconds(2)) }
        let distrusting = try tlsClient("distrust", caFile: rogue.certificate, cert: clientCert)
        do {
            try await distrusting.connect(timeout: .seconds(2))
            Issue.record("connected without trusting the broker")
        } catch let error as PropellerError {
            #expect(error.message.lowercased().contains("certificate"), "\(error.message)")
        }

        broker.crash()
        try broker.start()
        let pub = try tlsClient("pub", caFile: ca.certificate, cert: clientCert)
        try await pub.connect(timeout: .seconds(5))
        // Publish until the subscriber is back (one wait: a cancelled wait would end the stream).
        let publisher = Task {
            while !Task.isCancelled {
                try? pub.publish("t/x", Array("after restart".utf8))
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        let received = await next(good, within: 15)
        publisher.cancel()
        #expect(received.map { String(decoding: $0.payload, as: UTF8.self) } == "after restart", "the TLS client came back after the broker did")
        good.disconnect()
        pub.disconnect()
    }

    @Test func lastWillIsPublishedWhenTheConnectionDiesAndTheClientComesBack() async throws {
        let broker = try MosquittoServer()
        let watcher = try client(broker, "watch-\(UUID().uuidString.prefix(8))")
        try await watcher.connect()
        try watcher.subscribe("status/#")
        let agent = try client(broker, "agent-\(UUID().uuidString.prefix(8))", will: ("status/agent", Array(#"{"status":"offline"}"#.utf8)))
        try await agent.connect()
        try await Task.sleep(for: .milliseconds(200))
        agent.dropConnectionForTesting()
        let will = await next(watcher)
        #expect(will?.topic == "status/agent")
        #expect(will.map { String(decoding: $0.payload, as: UTF8.self) } == #"{"status":"offline"}"#)
        // It reconnects by itself.
        for _ in 0..<60 where agent.connectionCount < 2 { try await Task.sleep(for: .milliseconds(100)) }
        #expect(agent.connectionCount >= 2)
    }

    @Test func aBrokerRestartIsSurvivedWithSubscriptionsRenewed() async throws {
        let broker = try MosquittoServer()
        let sub = try client(broker, "resub-\(UUID().uuidString.prefix(8))")
        try await sub.connect()
        try sub.subscribe("tasks/+/logs")
        try broker.restart()  // no persistence: the broker forgets every subscription
        for _ in 0..<80 where !(sub.isConnected && sub.connectionCount >= 2) { try await Task.sleep(for: .milliseconds(100)) }
        #expect(sub.connectionCount >= 2)
        let pub = try client(broker, "pub2-\(UUID().uuidString.prefix(8))")
        try await pub.connect()
        try await Task.sleep(for: .milliseconds(200))
        try pub.publish("tasks/t1/logs", Array("line 1\n".utf8))
        let message = await next(sub)
        #expect(message?.topic == "tasks/t1/logs")
    }

    @Test func noBrokerIsAClearTimeout() async throws {
        var config = MQTTConfiguration(port: Int32(try freeLoopbackPort()), clientID: "lonely")
        config.reconnectDelay = (1, 1)
        let lonely = try MQTTClient(config)
        let error = await #expect(throws: PropellerError.self) { try await lonely.connect(timeout: .milliseconds(800)) }
        #expect(error?.message.contains("no connection to 127.0.0.1") == true)
    }

    /// Two brokers given as one cluster: when the first dies, the client moves on to the second
    /// at once, subscribes there again and gets what is published there; when the second dies
    /// and the first is back, it moves back. Mixed plain and TLS addresses are refused.
    @Test func aLostBrokerIsReplacedByTheNextAddress() async throws {
        let a = try MosquittoServer()
        let b = try MosquittoServer()
        var config = try MQTTConfiguration(urls: "tcp://127.0.0.1:\(a.port), tcp://127.0.0.1:\(b.port)", clientID: "sub-\(UUID().uuidString.prefix(8))")
        config.reconnectDelay = (1, 2)
        #expect(config.addresses.map(\.port) == [Int32(a.port), Int32(b.port)])
        let sub = try MQTTClient(config)
        try await sub.connect()
        try sub.subscribe("t/#")
        let first = sub.connectionCount
        a.crash()
        let pubB = try client(b, "pub-\(UUID().uuidString.prefix(8))")
        try await pubB.connect()
        let deadline = ContinuousClock.now + .seconds(10)
        while sub.connectionCount == first || !sub.isConnected {
            try #require(ContinuousClock.now < deadline, "the client did not move to the second broker")
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(200))  // the SUBACK
        try pubB.publish("t/x", Array("on b".utf8))
        #expect(await next(sub)?.payload == Array("on b".utf8))

        try a.start()
        let second = sub.connectionCount
        b.crash()
        let pubA = try client(a, "pub-\(UUID().uuidString.prefix(8))")
        try await pubA.connect()
        while sub.connectionCount == second || !sub.isConnected {
            try #require(ContinuousClock.now < deadline + .seconds(10), "the client did not move back to the first broker")
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(200))
        try pubA.publish("t/y", Array("on a".utf8))
        #expect(await next(sub)?.payload == Array("on a".utf8))
        sub.disconnect()

        #expect(throws: PropellerError.self) { _ = try MQTTConfiguration(urls: "tcp://a:1883,mqtts://b:8883", clientID: "x") }
        #expect(throws: PropellerError.self) { _ = try MQTTConfiguration(urls: " , ", clientID: "x") }
    }
}

@Suite("MQTT URLs")
struct MQTTURLTests {
    @Test(arguments: [
        ("tcp://127.0.0.1:1883", "127.0.0.1", Int32(1883), false),
        ("mqtt://broker.example", "broker.example", 1883, false),
        ("mqtts://broker.example", "broker.example", 8883, true),
        ("mqtts://10.0.0.1:9000/", "10.0.0.1", 9000, true),
        ("tcp://[::1]:1884", "::1", 1884, false),
    ])
    func accepted(url: String, host: String, port: Int32, tls: Bool) throws {
        let c = try MQTTConfiguration(url: url, clientID: "x")
        #expect(c.host == host && c.port == port && (c.tls != nil) == tls)
    }

    @Test(arguments: ["http://x:1", "tcp://", "tcp://user:pw@host:1883", "tcp://host:99999", "tcp://host:abc", "host:1883"])
    func rejected(url: String) {
        #expect(throws: PropellerError.self) { try MQTTConfiguration(url: url, clientID: "x") }
    }

}
