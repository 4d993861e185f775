import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// A deployment made by `propeller provision` and nothing else: mosquitto with the generated
/// password and ACL files behind TLS, the manager over HTTPS with the generated token hash, the
/// proxy and proplets with their own identities. It runs a task; then every intruder fails.
@Suite("Provisioned deployment: identities, broker ACL, TLS, API tokens", .serialized,
       .enabled(if: isRoot, "requires root: proplets run containers (namespaces, cgroups, overlayfs)"))
final class SecureDeploymentTests {
    let dir: TempDirectory
    let out: String
    let ca: TestCA
    let rogue: TestCA
    let broker: MosquittoServer
    let registry: RegistryServer
    let httpPort: Int
    let topics: Topics
    /// The broker-wide lines of the provisioned `mosquitto/propeller.conf` the broker runs with.
    let provisioned: [String]
    var proplets: [String] = []
    var daemons: [String: DaemonProcess] = [:]

    init() throws {
        dir = try TempDirectory("propeller-secure")
        out = dir.path + "/deployment"
        ca = try TestCA(dir.path + "/ca")
        rogue = try TestCA(dir.path + "/rogue", name: "Rogue CA")
        let brokerCert = try ca.issue("broker")
        let managerCert = try ca.issue("manager")
        let mqttPort = try freeLoopbackPort()
        httpPort = try freeLoopbackPort()
        let provision = try propeller(Self.provisionArguments(out: out, ca: ca, mqttPort: mqttPort, httpPort: httpPort, managerCert: managerCert))
        guard provision.status == 0 else { throw PropellerError(.internalError, "provision failed: \(provision.stderrText)") }
        topics = Topics(domain: "secure", channel: "e2e")
        proplets = (readFile(out + "/deployment.conf") ?? "").split(separator: "\n").filter { $0.hasPrefix("proplet = ") }.map { String($0.dropFirst(10)) }
        // The provisioned file's broker-wide settings, as an operator includes them (its paths are
        // the production ones, so those lines come from the test's own copy).
        provisioned = (readFile(out + "/mosquitto/propeller.conf") ?? "").split(separator: "\n").map(String.init)
            .filter { ["use_username_as_clientid", "message_size_limit", "persistent_client_expiration"].contains(String($0.prefix { $0 != " " })) }
        broker = try MosquittoServer(port: mqttPort,
                                     settings: ["allow_anonymous false", "password_file \(out)/mosquitto/password_file", "acl_file \(out)/mosquitto/acl_file"]
                                        + provisioned.filter { !$0.hasPrefix("use_username_as_clientid") },
                                     listener: provisioned.filter { $0.hasPrefix("use_username_as_clientid") } + ["cafile \(ca.certificate)", "certfile \(brokerCert.certificate)", "keyfile \(brokerCert.key)"])
        registry = try ImageTestContext().registry(holding: "app:v1")
    }

    static func provisionArguments(out: String, ca: TestCA, mqttPort: Int, httpPort: Int, managerCert: (certificate: String, key: String)) -> [String] {
        ["provision", "--out", out, "--proplets", "2", "--domain", "secure", "--channel", "e2e",
         "--broker", "mqtts://127.0.0.1:\(mqttPort)", "--manager-url", "https://127.0.0.1:\(httpPort)",
         "--mqtt-ca", ca.certificate, "--manager-ca", ca.certificate, "--manager-tls-cert", managerCert.certificate, "--manager-tls-key", managerCert.key]
    }

    deinit {
        for d in daemons.values { d.stop() }
        broker.stop()
        registry.stop()
        if ProcessInfo.processInfo.environment["PROPELLER_KEEP_TEST_DIR"] == nil { dir.remove() }
    }

    var cliConfig: String { out + "/cli.conf" }
    var image: String { "\(registry.address)/app:v1" }

    /// `key = value` from one of the generated config files.
    func setting(_ key: String, in file: String) -> String? {
        (readFile(file) ?? "").split(separator: "\n").first { $0.hasPrefix(key + " = ") }.map { String($0.dropFirst(key.count + 3)) }
    }

    func start(_ name: String, _ arguments: [String]) throws {
        daemons[name] = try DaemonProcess(propellerBinary, arguments + ["--log-level", "debug"], logPath: dir.path + "/\(name).log")
    }

    func startProplet(_ id: String) throws {
        try start(id, ["proplet", "--config", out + "/proplets/\(id).conf", "--data-dir", dir.path + "/" + id, "--memory", "2G", "--liveliness-interval", "1s"])
        try waitUntil("proplet \(id) alive", timeout: 20) { self.propletAlive(id) }
    }

    func propletAlive(_ id: String) -> Bool {
        guard let r = try? propeller(["proplet", "get", id, "--json", "--config", cliConfig]), r.status == 0,
              let object = try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else { return false }
        return object["alive"] as? Bool == true
    }

    func waitUntil(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        throw PropellerError(.internalError, "timed out waiting for \(what)\n--- broker ---\n\((readFile(broker.logPath) ?? "").suffix(6000))\n" + daemons.map { "--- \($0.key) ---\n\($0.value.log.suffix(3000))" }.joined(separator: "\n"))
    }

    /// mosquitto_pub/sub over TLS to the broker, as `user` (nil: anonymous).
    func mqttArguments(user: String?, ca caFile: String? = nil) -> [String] {
        var args = ["-h", "127.0.0.1", "-p", String(broker.port), "--cafile", caFile ?? ca.certificate]
        if let user {
            let file = user.hasPrefix("proplet-") ? out + "/proplets/\(user).conf" : out + "/" + (user == "propeller-manager" ? "manager" : "proxy") + ".conf"
            args += ["-u", user, "-P", setting("mqtt-password", in: file) ?? ""]
        }
        return args
    }

    @Test func aProvisionedDeploymentRunsATaskAndRefusesEveryoneElse() throws {
        try #require(proplets.count == 2)
        let (p1, p2) = (proplets[0], proplets[1])
        for file in ["manager.conf", "proxy.conf", "cli.conf", "proplets/\(p1).conf"] {
            var st = stat()
            #expect(stat(out + "/" + file, &st) == 0 && st.st_mode & 0o777 == 0o600, "\(file)")
        }
        // Running provision again changes nothing.
        let before = readFile(out + "/manager.conf")
        let again = try propeller(Self.provisionArguments(out: out, ca: ca, mqttPort: broker.port, httpPort: httpPort,
                                                          managerCert: (dir.path + "/ca/manager.pem", dir.path + "/ca/manager.key")))
        #expect(again.status != 0 && again.stderrText.contains("already holds a deployment"), "\(again.stderrText)")
        #expect(readFile(out + "/manager.conf") == before)

        try start("manager", ["manager", "--config", out + "/manager.conf", "--data-dir", dir.path + "/manager", "--liveliness-interval", "1s"])
        try waitUntil("the manager listening", timeout: 20) { canConnect(port: self.httpPort) }
        let proxyPort = try freeLoopbackPort()
        try start("proxy", ["proxy", "--config", out + "/proxy.conf", "--data-dir", dir.path + "/proxy", "--http", "127.0.0.1:\(proxyPort)", "--chunk-size", "64K"])
        try startProplet(p1)

        // The whole path: CLI over HTTPS with the provisioned token, MQTT over TLS with ACLs,
        // the image through the proxy.
        let hello = try propeller(["task", "create", "hello", "--image", image, "--wait", "--config", cliConfig])
        #expect(hello.status == 0, "\(hello.stderrText)\n\(daemons["manager"]?.log.suffix(3000) ?? "")")
        #expect(hello.stdoutText == "hi from layer two in /home/app as app with hello\n")
        // The manager's answer to the proplet's question for its placement epoch passes the ACL
        // (it travels on the acknowledgement topic, which ACLs of every version grant).
        #expect(daemons[p1]?.log.contains("placement epoch confirmed") == true)
        // Actors too: worker and execution commands and reports pass the ACL.
        let actor = try propeller(["actor", "create", "echo", "--image", image, "--memory", "64M", "--config", cliConfig, "--",
                                   "sh", "-c", #"printf 'echo %s' "$MSG" > "$PROPELLER_RESULTS""#]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        var reply = try propeller(["actor", "send", actor, "ping", "--sync", "--config", cliConfig])
        for _ in 0..<50 where reply.status != 0 || reply.stdoutText.isEmpty {
            usleep(200_000)  // the first worker may still be pulling: the call above then waited and timed out
            reply = try propeller(["actor", "send", actor, "ping", "--sync", "--config", cliConfig])
        }
        #expect(reply.stdoutText == "echo ping", "\(reply.stderrText)")

        // No credentials: the broker refuses the connection, and says so in its log.
        let anonymous = try runTool("/usr/bin/mosquitto_pub", mqttArguments(user: nil) + ["-t", topics.report(.alive, from: p1), "-m", "{}"])
        #expect(anonymous.status != 0 && anonymous.stderr.contains("not authorised"), "\(anonymous.stderr)")
        // A client that does not trust the broker's CA never gets to talk to it.
        let untrusting = try runTool("/usr/bin/mosquitto_pub", mqttArguments(user: p2, ca: rogue.certificate) + ["-t", topics.report(.alive, from: p2), "-m", "{}"])
        #expect(untrusting.status != 0, "\(untrusting.stderr)")

        // Proplet p2's identity subscribes to p1's start topic and to the manager's topics: the
        // broker delivers nothing (mosquitto 2.0 grants the SUBACK and filters every message).
        let eavesdropper = try DaemonProcess("/usr/bin/mosquitto_sub", mqttArguments(user: p2) + ["-v", "-t", topics.start(p1), "-t", topics.allReports(.alive), "-t", topics.allReports(.results)],
                                             logPath: dir.path + "/eavesdropper.log")
        usleep(500_000)
        let pinned = try propeller(["task", "create", "pinned", "--image", image, "--proplet", p1, "--wait", "--config", cliConfig, "--", "echo", "pinned"])
        #expect(pinned.status == 0 && pinned.stdoutText == "pinned\n", "\(pinned.stderrText)")

        // p2's identity forges p1's heartbeat ("offline"): the broker drops it and logs it.
        let offline = try WireCoding.encode(PropletHeartbeat(propletId: p1, status: .offline, seq: 1_000_000))
        let forged = try runTool("/usr/bin/mosquitto_pub", mqttArguments(user: p2) + ["-q", "1", "-t", topics.report(.alive, from: p1), "-m", String(decoding: offline, as: UTF8.self)])
        #expect(forged.status == 0, "\(forged.stderr)")
        // …and p1's results, and a start for p1 as if it were the manager.
        for topic in [topics.report(.results, from: p1), topics.start(p1)] {
            _ = try runTool("/usr/bin/mosquitto_pub", mqttArguments(user: p2) + ["-q", "1", "-t", topic, "-m", "{}"])
        }
        // On its own topic, claiming to be p1: the manager rejects it and logs it.
        let claimed = try runTool("/usr/bin/mosquitto_pub", mqttArguments(user: p2) + ["-q", "1", "-t", topics.report(.alive, from: p2), "-m", String(decoding: offline, as: UTF8.self)])
        #expect(claimed.status == 0, "\(claimed.stderr)")
        // A forged failure for p1's finished task, sent by p2 on its own results topic.
        let list = try JSONSerialization.jsonObject(with: try propeller(["task", "list", "--json", "--config", cliConfig]).stdout) as? [String: Any]
        let hid = try #require((list?["tasks"] as? [[String: Any]])?.first { $0["name"] as? String == "pinned" }?["id"] as? String)
        let result = try WireCoding.encode(TaskResult(taskId: hid, attempt: 1, propletId: p1, state: .failed, exitCode: 99, error: "forged"))
        _ = try runTool("/usr/bin/mosquitto_pub", mqttArguments(user: p2) + ["-q", "1", "-t", topics.report(.results, from: p2), "-m", String(decoding: result, as: UTF8.self)])

        // p2's identity connects under p1's client id: before `use_username_as_clientid`, the
        // broker pushed p1 off, fired its Last Will and the manager declared it dead.
        #expect(provisioned.count == 3, "\(provisioned)")
        let takeover = try DaemonProcess("/usr/bin/mosquitto_sub", mqttArguments(user: p2) + ["-i", "propeller-proplet-\(p1)", "-t", topics.start(p2)],
                                         logPath: dir.path + "/takeover.log")
        // An oversized message from a proplet identity: the broker drops it.
        let huge = String(repeating: "x", count: 9 << 20)
        writeFile(dir.path + "/huge", huge)
        _ = try runTool("/usr/bin/mosquitto_pub", mqttArguments(user: p2) + ["-q", "1", "-t", topics.report(.alive, from: p2), "-f", dir.path + "/huge"])
        usleep(4_000_000)  // more than three heartbeat intervals
        var gotThrough: [String] = []
        if !propletAlive(p1) { gotThrough.append("p1 was pushed off by a client using its client id") }
        if (daemons["manager"]?.log ?? "").contains(String(repeating: "x", count: 1000)) { gotThrough.append("the manager received the 9 MiB message") }
        takeover.crash()
        attackReport("broker client-id takeover and oversized message", gotThrough)

        usleep(1_000_000)
        eavesdropper.crash()
        var forgeries: [String] = []
        if eavesdropper.log.contains(topics.base) { forgeries.append("p2 received another's messages: \(eavesdropper.log.prefix(500))") }
        let brokerLog = readFile(broker.logPath) ?? ""
        for topic in [topics.report(.alive, from: p1), topics.report(.results, from: p1), topics.start(p1)]
        where !brokerLog.split(separator: "\n").contains(where: { $0.contains("Denied PUBLISH") && $0.contains("'\(topic)'") }) {
            forgeries.append("the broker did not deny p2's publish on \(topic)")
        }
        if !brokerLog.contains("not authorised") { forgeries.append("the anonymous client was not refused") }
        let managerLog = daemons["manager"]?.log ?? ""
        if !(managerLog.contains("rejected a message") && managerLog.contains("proplet \(p2) sent a message as proplet \(p1)")) {
            forgeries.append("the manager did not reject p2 speaking as p1")
        }
        usleep(1_500_000)
        if !propletAlive(p1) { forgeries.append("the forged offline heartbeats took p1 down") }
        let pinnedState = String(decoding: try propeller(["task", "get", hid, "--json", "--config", cliConfig]).stdout, as: UTF8.self)
        if !pinnedState.contains("\"completed\"") { forgeries.append("the forged failure changed the finished task: \(pinnedState.prefix(300))") }
        attackReport("forged reports and eavesdropping between proplet identities", forgeries)

        // The API: no token, a wrong token, a revoked token; and a client that does not trust
        // the manager's CA.
        let api = ["--manager", "https://127.0.0.1:\(httpPort)", "--manager-ca", ca.certificate]
        let none = try propeller(["task", "list"] + api, environment: ["PROPELLER_API_TOKEN": ""])
        #expect(none.status != 0 && none.stderrText.contains("missing bearer token"), "\(none.stderrText)")
        let wrong = try propeller(["task", "list"] + api, environment: ["PROPELLER_API_TOKEN": "ptk_wrong"])
        #expect(wrong.status != 0 && wrong.stderrText.contains("invalid bearer token"), "\(wrong.stderrText)")
        let made = try propeller(["token", "create", "ci", "--role", "developer", "--json", "--config", cliConfig])
        let created = try #require(try JSONSerialization.jsonObject(with: made.stdout) as? [String: Any], "\(made.stderrText)")
        let secret = try #require(created["token"] as? String)
        #expect(try propeller(["task", "list"] + api, environment: ["PROPELLER_API_TOKEN": secret]).status == 0)
        let revoke = try propeller(["token", "revoke", try #require(created["id"] as? String), "--config", cliConfig])
        #expect(revoke.status == 0, "\(revoke.stderrText)")
        let revoked = try propeller(["task", "list"] + api, environment: ["PROPELLER_API_TOKEN": secret])
        #expect(revoked.status != 0 && revoked.stderrText.contains("invalid bearer token"), "\(revoked.stderrText)")
        #expect(daemons["manager"]?.log.contains("API request refused") == true)
        #expect(!(daemons["manager"]?.log.contains(secret) ?? true), "a token never appears in the log")
        let distrust = try propeller(["task", "list", "--manager", "https://127.0.0.1:\(httpPort)", "--manager-ca", rogue.certificate], environment: ["PROPELLER_API_TOKEN": secret])
        #expect(distrust.status != 0 && distrust.stderrText.lowercased().contains("certificate"), "\(distrust.stderrText)")
        let plain = try propeller(["task", "list", "--manager", "http://192.0.2.1:7070"], environment: ["PROPELLER_API_TOKEN": secret])
        #expect(plain.status != 0 && plain.stderrText.contains("refusing to send the API token over plain http"), "\(plain.stderrText)")

        // Secrets: never as flags, never in a file others can read.
        let flag = try propeller(["manager", "--mqtt-password", "x"])
        #expect(flag.status == 125 && flag.stderrText.contains("not accepted on the command line"), "\(flag.stderrText)")
        let loose = dir.path + "/loose.conf"
        try FileManager.default.copyItem(atPath: out + "/proplets/\(p2).conf", toPath: loose)
        chmod(loose, 0o644)
        let looseRun = try propeller(["proplet", "--config", loose])
        #expect(looseRun.status == 125 && looseRun.stderrText.contains("can be read by other users"), "\(looseRun.stderrText)")
        let renamed = try propeller(["proplet", "--config", out + "/proplets/\(p2).conf", "--id", "someone-else", "--data-dir", dir.path + "/renamed"])
        #expect(renamed.status == 125 && renamed.stderrText.contains("differs from --mqtt-username"), "\(renamed.stderrText)")

        // A proplet added later joins once the broker has reloaded its files.
        let added = try propeller(["provision", "add-proplet", "--out", out])
        #expect(added.status == 0, "\(added.stderrText)")
        let p3 = try #require((readFile(out + "/deployment.conf") ?? "").split(separator: "\n").last { $0.hasPrefix("proplet = ") }?.dropFirst(10))
        #expect(!proplets.contains(String(p3)))
        // (A restart rather than SIGHUP: a broker spawned by the test runner inherits its blocked
        // signal mask, so it never sees the HUP.) Everyone reconnects with their identities.
        try broker.restart()
        try startProplet(String(p3))
        #expect(propletAlive(p1))
        try waitUntil("\(p3) confirmed its epoch", timeout: 20) { self.daemons[String(p3)]?.log.contains("placement epoch confirmed") == true }
    }
}
