import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Proplet identities made and revoked through the manager's API while the broker runs
/// (`propeller proplet add|revoke`), as SuperMQ manages its clients: a real mosquitto with the
/// dynamic-security plugin next to the provisioned password and ACL files, and a real NATS
/// cluster whose users file the manager rewrites and reloads.
@Suite("Proplet identities on a running broker", .serialized,
       .enabled(if: isRoot, "requires root: proplets run containers (namespaces, cgroups, overlayfs)"))
final class PropletIdentityTests {
    let dir: TempDirectory
    var daemons: [String: DaemonProcess] = [:]

    init() throws {
        dir = try TempDirectory("propeller-identities")
    }

    deinit {
        for d in daemons.values { d.stop() }
        if ProcessInfo.processInfo.environment["PROPELLER_KEEP_TEST_DIR"] == nil { dir.remove() }
    }

    func start(_ name: String, _ arguments: [String]) throws {
        daemons[name] = try DaemonProcess(propellerBinary, arguments + ["--log-level", "debug"], logPath: dir.path + "/\(name).log")
    }

    func setting(_ key: String, in file: String) -> String? {
        (readFile(file) ?? "").split(separator: "\n").first { $0.hasPrefix(key + " = ") }.map { String($0.dropFirst(key.count + 3)) }
    }

    func waitUntil(_ what: String, timeout: Double, logs: () -> String = { "" }, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        throw PropellerError(.internalError, "timed out waiting for \(what)\n\(logs())\n" + daemons.map { "--- \($0.key) ---\n\($0.value.log.suffix(3000))" }.joined(separator: "\n"))
    }

    func json(_ r: CLIResult) -> [String: Any]? {
        r.status == 0 ? (try? JSONSerialization.jsonObject(with: r.stdout)) as? [String: Any] : nil
    }

    func proplet(_ id: String, _ cli: [String]) throws -> [String: Any]? {
        json(try propeller(["proplet", "get", id, "--json"] + cli))
    }

    /// A token of the operator role, in a config file for the CLI.
    func operatorConfig(httpPort: Int, cli: [String]) throws -> [String] {
        let token = try propeller(["token", "create", "ops", "--role", "operator"] + cli).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let file = dir.path + "/ops.conf"
        writeFile(file, "manager = http://127.0.0.1:\(httpPort)\napi-token = \(token)\n")
        chmod(file, 0o600)
        return ["--config", file]
    }

    /// Starts proplet `edge` from its added identity, runs a long task there (p1 closed to new
    /// work meanwhile), revokes `edge` as an operator: the broker disconnects it
    /// (`disconnected`), the manager gives it up at once and the task runs again on p1.
    /// Returns the task's id.
    func runThenRevoke(edge: String, configFile: String, p1: String, image: String, cli: [String], ops: [String], disconnected: () -> Bool) throws -> String {
        try start("edge", ["proplet", "--config", configFile, "--data-dir", dir.path + "/edge", "--image-source", "direct", "--liveliness-interval", "1s", "--drain-timeout", "1s"])
        try waitUntil("both proplets alive", timeout: 30) {
            try self.proplet(edge, cli)?["alive"] as? Bool == true && self.proplet(p1, cli)?["alive"] as? Bool == true
        }

        // A task on the new proplet (p1 closed to new work meanwhile).
        #expect(try propeller(["proplet", "eligibility", p1, "off"] + cli).status == 0)
        let created = try propeller(["task", "create", "long", "--image", image, "--start", "--restart", "on-failure", "--max-attempts", "3"] + cli
                                    + ["--", "sh", "-c", "echo started; sleep 300"])
        try #require(created.status == 0, "\(created.stderrText)")
        let task = created.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        func taskRecord() throws -> [String: Any]? { json(try propeller(["task", "get", task, "--json"] + cli)) }
        try waitUntil("the task running on \(edge)", timeout: 60, logs: { (try? propeller(["task", "get", task] + cli).stdoutText) ?? "" }) {
            let t = try taskRecord()
            return t?["state"] as? String == "running" && t?["assigned_proplet"] as? String == edge
        }

        #expect(try propeller(["proplet", "eligibility", p1, "on"] + cli).status == 0)
        let revokedAt = Date()
        let revoked = try propeller(["proplet", "revoke", edge] + ops)
        #expect(revoked.status == 0, "\(revoked.stderrText)")
        // At once: the broker closed its connection, the manager gave it up without waiting for
        // missed heartbeats, and its task went to p1.
        try waitUntil("the broker to disconnect \(edge)", timeout: 5) {
            disconnected()
        }
        let lost = try #require(try proplet(edge, cli))
        #expect(lost["alive"] as? Bool == false && (lost["reason"] as? String)?.contains("identity was revoked") == true, "\(lost)")
        try waitUntil("the task running on \(p1)", timeout: 60) {
            let t = try taskRecord()
            return t?["state"] as? String == "running" && t?["assigned_proplet"] as? String == p1
        }
        #expect(Date().timeIntervalSince(revokedAt) < 30)
        return task
    }

    /// Adds a proplet through the API, runs a task there, revokes it: the broker closes its
    /// connection at once, the manager gives it up at once, its task runs again elsewhere, and it
    /// cannot log in again. Only an admin may add one.
    @Test func mosquittoDynamicSecurityAddsAndRevokesAProplet() throws {
        let out = dir.path + "/deployment"
        let mqttPort = try freeLoopbackPort()
        let httpPort = try freeLoopbackPort()
        let provision = try propeller(["provision", "--out", out, "--proplets", "1", "--domain", "ids", "--channel", "e2e", "--broker-admin",
                                       "--broker", "mqtt://127.0.0.1:\(mqttPort)", "--manager-url", "http://127.0.0.1:\(httpPort)"])
        try #require(provision.status == 0, "\(provision.stderrText)")
        let conf = (readFile(out + "/mosquitto/propeller.conf") ?? "").split(separator: "\n").map(String.init)
        let plugin = conf.filter { $0.hasPrefix("plugin") }
        #expect(plugin.count == 2, "\(conf)")
        #expect(readFile(out + "/mosquitto/acl_file")?.contains("topic write $CONTROL/dynamic-security/v1") == true)
        #expect(setting("broker-admin", in: out + "/manager.conf") == "dynsec")
        let p1 = try #require((readFile(out + "/deployment.conf") ?? "").split(separator: "\n").first { $0.hasPrefix("proplet = ") }.map { String($0.dropFirst(10)) })
        let broker = try MosquittoServer(port: mqttPort,
                                         settings: ["allow_anonymous false", "password_file \(out)/mosquitto/password_file", "acl_file \(out)/mosquitto/acl_file"] + plugin
                                            + conf.filter { ["message_size_limit", "persistent_client_expiration"].contains(String($0.prefix { $0 != " " })) },
                                         listener: ["use_username_as_clientid true"])
        defer { broker.stop() }
        let registry = try ImageTestContext().registry(holding: "app:v1")
        defer { registry.stop() }
        let image = "\(registry.address)/app:v1"
        let cli = ["--config", out + "/cli.conf"]

        try start("manager", ["manager", "--config", out + "/manager.conf", "--data-dir", dir.path + "/manager", "--liveliness-interval", "1s"])
        try waitUntil("the manager listening", timeout: 20) { canConnect(port: httpPort) }
        try start(p1, ["proplet", "--config", out + "/proplets/\(p1).conf", "--data-dir", dir.path + "/" + p1, "--image-source", "direct", "--liveliness-interval", "1s", "--drain-timeout", "1s"])

        // Only an admin lets a proplet in; an operator may revoke one, not add one.
        let ops = try operatorConfig(httpPort: httpPort, cli: cli)
        let refused = try propeller(["proplet", "add", "sneaky"] + ops)
        #expect(refused.status != 0 && refused.stderrText.contains("proplets:admit"), "\(refused.stderrText)")

        let configFile = dir.path + "/edge.conf"
        let added = try propeller(["proplet", "add", "edge-1", "--out", configFile] + cli)
        try #require(added.status == 0, "\(added.stderrText)\n\(daemons["manager"]?.log.suffix(3000) ?? "")")
        var st = stat()
        #expect(stat(configFile, &st) == 0 && st.st_mode & 0o777 == 0o600)
        let edge = try #require(setting("id", in: configFile))
        #expect(setting("mqtt-username", in: configFile) == edge && setting("domain", in: configFile) == "ids")
        let again = try propeller(["proplet", "add", "edge-1", "--out", configFile] + cli)
        #expect(again.status != 0 && again.stderrText.contains(configFile), "an existing file is not replaced: \(again.stderrText)")
        #expect(try propeller(["proplet", "identities", "-o", "json"] + cli).stdoutText.components(separatedBy: "edge-1").count == 2,
                "refused before an identity was made")
        // The broker knows the new identity now: no file was edited, nothing restarted.
        #expect(readFile(out + "/mosquitto/password_file")?.contains(edge) == false)
        // It has a provisioned proplet's grants and no more: it cannot speak for p1 (before the
        // proplet starts: a second client with its user name would push it off).
        let topics = Topics(domain: "ids", channel: "e2e")
        let password = setting("mqtt-password", in: configFile) ?? ""
        let forged = try runTool("/usr/bin/mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mqttPort), "-u", edge, "-P", password, "-q", "1",
                                                           "-t", topics.report(.alive, from: p1), "-m", "{}"])
        #expect(forged.status == 0, "\(forged.stderr)")
        #expect((readFile(broker.logPath) ?? "").split(separator: "\n").contains { $0.contains("Denied PUBLISH") && $0.contains(topics.report(.alive, from: p1)) })
        let task = try runThenRevoke(edge: edge, configFile: configFile, p1: p1, image: image, cli: cli, ops: ops) {
            // The broker closed its connection by itself.
            (readFile(broker.logPath) ?? "").contains("Client \(edge) been disconnected by administrative action")
        }
        // It cannot come back: its reconnections are refused.
        // (mosquitto logs a refused login without its user name: the edge is the only client
        // that tries to log in at this point.)
        try waitUntil("\(edge)'s login refused", timeout: 20) {
            (readFile(broker.logPath) ?? "").contains("disconnected, not authorised")
        }
        let denied = try runTool("/usr/bin/mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mqttPort), "-u", edge, "-P", password, "-t", topics.report(.alive, from: edge), "-m", "{}"])
        #expect(denied.status != 0 && denied.stderr.contains("not authorised"), "\(denied.stderr)")
        #expect(try proplet(edge, cli)?["alive"] as? Bool == false)

        // The list shows who revoked it.
        let list = try propeller(["proplet", "identities"] + cli)
        #expect(list.stdoutText.contains(edge) && list.stdoutText.contains("revoked") && list.stdoutText.contains("ops"), "\(list.stdoutText)")
        let unknown = try propeller(["proplet", "revoke", "proplet-000000000000"] + cli)
        #expect(unknown.status != 0 && unknown.stderrText.contains("no proplet identity"), "\(unknown.stderrText)")
        // The audit log has both.
        let audit = try propeller(["audit"] + cli).stdoutText
        #expect(audit.contains("POST /proplets/\(edge)/revoke") || audit.contains("/proplets/{id}/revoke"), "\(audit.suffix(2000))")
        _ = try propeller(["task", "stop", task] + cli)

        // A team's machine, held to the team's namespace by its identity: its config says so,
        // and with that line taken out the manager still holds it there.
        #expect(try propeller(["namespace", "create", "team-a"] + cli).status == 0)
        let teamFile = dir.path + "/team.conf"
        let teamAdded = try propeller(["proplet", "add", "team-box", "--only-namespace", "team-a", "--out", teamFile] + cli)
        try #require(teamAdded.status == 0, "\(teamAdded.stderrText)")
        let teamBox = try #require(setting("id", in: teamFile))
        #expect(setting("namespace", in: teamFile) == "team-a")
        writeFile(teamFile, (readFile(teamFile) ?? "").split(separator: "\n").filter { !$0.hasPrefix("namespace = ") }.joined(separator: "\n") + "\n")
        chmod(teamFile, 0o600)
        try start("team-box", ["proplet", "--config", teamFile, "--data-dir", dir.path + "/team-box", "--image-source", "direct", "--liveliness-interval", "1s", "--drain-timeout", "1s"])
        try waitUntil("\(teamBox) alive", timeout: 30) { try self.proplet(teamBox, cli)?["alive"] as? Bool == true }
        let held = try proplet(teamBox, cli)
        #expect(held?["namespaces"] as? [String] == ["team-a"], "\(held ?? [:])")
        #expect(daemons["manager"]?.log.contains("proplet held to its identity's namespaces") == true)
        let unknownNamespace = try propeller(["proplet", "add", "x", "--only-namespace", "nope"] + cli)
        #expect(unknownNamespace.status != 0 && unknownNamespace.stderrText.contains("no namespace nope"), "\(unknownNamespace.stderrText)")
    }

    /// The same on a three-node NATS cluster: the manager adds the user to the provisioned users
    /// file and signals every node to reload it; revoking takes the user out again, and NATS
    /// closes its connection on the reload.
    @Test(.enabled(if: NATSCluster.isInstalled, "requires nats-server (scripts/setup installs it)"))
    func natsUsersFileAddsAndRevokesAProplet() throws {
        let out = dir.path + "/deployment"
        let ports = try (0..<3).map { _ in try freeLoopbackPort() }
        let httpPort = try freeLoopbackPort()
        let provision = try propeller(["provision", "--out", out, "--proplets", "1", "--domain", "idn", "--channel", "e2e", "--broker-kind", "nats", "--broker-admin",
                                       "--broker", ports.map { "mqtt://127.0.0.1:\($0)" }.joined(separator: ","), "--manager-url", "http://127.0.0.1:\(httpPort)"])
        try #require(provision.status == 0, "\(provision.stderrText)")
        let managerConf = out + "/manager.conf"
        #expect(setting("broker-admin", in: managerConf) == "nats")
        #expect(setting("nats-users-file", in: managerConf)?.hasSuffix("/deployment/nats/propeller-users.conf") == true)
        let pidLine = "nats-pid-file = /run/nats-server/propeller.pid"
        #expect(readFile(out + "/nats/propeller.conf")?.contains("pid_file: /run/nats-server/propeller.pid") == true)
        let p1 = try #require((readFile(out + "/deployment.conf") ?? "").split(separator: "\n").first { $0.hasPrefix("proplet = ") }.map { String($0.dropFirst(10)) })
        let nats = try NATSCluster(mqttPorts: ports, extra: "include ./propeller-users.conf", links: ["propeller-users.conf": out + "/nats/propeller-users.conf"])
        // The nodes' pid files are the test's: one in the config file, two on the command line.
        let original = try #require(readFile(managerConf))
        try #require(original.contains(pidLine))
        writeFile(managerConf, original.replacingOccurrences(of: pidLine, with: "nats-pid-file = \(nats.pidFile(0))"))
        chmod(managerConf, 0o600)
        let registry = try ImageTestContext().registry(holding: "app:v1")
        defer { registry.stop() }
        let cli = ["--config", out + "/cli.conf"]
        try start("manager", ["manager", "--config", managerConf, "--nats-pid-file", nats.pidFile(1), "--nats-pid-file", nats.pidFile(2),
                              "--data-dir", dir.path + "/manager", "--liveliness-interval", "1s"])
        try waitUntil("the manager listening", timeout: 20) { canConnect(port: httpPort) }
        try start(p1, ["proplet", "--config", out + "/proplets/\(p1).conf", "--data-dir", dir.path + "/" + p1, "--image-source", "direct",
                       "--liveliness-interval", "1s", "--drain-timeout", "1s"])

        let configFile = dir.path + "/edge.conf"
        let added = try propeller(["proplet", "add", "edge-n", "--out", configFile] + cli)
        try #require(added.status == 0, "\(added.stderrText)\n\(daemons["manager"]?.log.suffix(3000) ?? "")")
        let edge = try #require(setting("id", in: configFile))
        let users = out + "/nats/propeller-users.conf"
        var st = stat()
        #expect(readFile(users)?.contains("\"\(edge)\"") == true && stat(users, &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(setting("mqtt", in: configFile) == ports.map { "mqtt://127.0.0.1:\($0)" }.joined(separator: ","))

        let ops = try operatorConfig(httpPort: httpPort, cli: cli)
        let task = try runThenRevoke(edge: edge, configFile: configFile, p1: p1, image: "\(registry.address)/app:v1", cli: cli, ops: ops) {
            // Its connection closed by the reload, its next login refused.
            (0..<3).contains { nats.log($0).contains("authentication error - User \"\(edge)\"") }
        }
        #expect(readFile(users)?.contains("\"\(edge)\"") == false)
        #expect(readFile(users)?.contains("\"\(p1)\"") == true, "the others stay")
        let password = setting("mqtt-password", in: configFile) ?? ""
        let denied = try runTool("/usr/bin/mosquitto_pub", ["-h", "127.0.0.1", "-p", String(ports[2]), "-u", edge, "-P", password,
                                                           "-t", Topics(domain: "idn", channel: "e2e").report(.alive, from: edge), "-m", "{}"])
        #expect(denied.status != 0, "\(denied.stderr)")
        _ = try propeller(["task", "stop", task] + cli)
    }
}
