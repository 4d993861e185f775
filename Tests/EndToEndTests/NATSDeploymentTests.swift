import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// `propeller provision --broker-kind nats` on a real three-node NATS cluster: the provisioned
/// users and permissions carry a task from the CLI to a proplet and back, and refuse what the
/// mosquitto ACL refuses.
@Suite("Provisioned NATS deployment", .enabled(if: isRoot, "requires root: the proplet runs containers"),
       .enabled(if: NATSCluster.isInstalled, "requires nats-server (scripts/setup installs it)"))
final class NATSDeploymentTests: Sendable {
    func setting(_ key: String, in file: String) -> String? {
        (readFile(file) ?? "").split(separator: "\n").first { $0.hasPrefix(key + " = ") }.map { String($0.dropFirst(key.count + 3)) }
    }

    /// mosquitto_pub or mosquitto_sub as a provisioned identity, on node `node`.
    func mqtt(_ tool: String, _ nats: NATSCluster, node: Int, user: String, password: String, _ args: [String], timeout: Double = 10) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try runProcess("/usr/bin/" + tool, ["-h", "127.0.0.1", "-p", String(nats.mqttPorts[node]), "-u", user, "-P", password, "-q", "1"] + args, timeout: timeout)
        return (r.status, String(decoding: r.stdout, as: UTF8.self), String(decoding: r.stderr, as: UTF8.self))
    }

    @Test func aProvisionedNATSDeploymentRunsATaskAndRefusesEveryoneElse() throws {
        let dir = try TempDirectory("propeller-nats-deployment")
        defer { dir.remove() }
        let out = dir.path + "/deployment"
        let ports = try (0..<3).map { _ in try freeLoopbackPort() }
        let httpPort = try freeLoopbackPort()
        let provision = try propeller(["provision", "--out", out, "--proplets", "2", "--domain", "natsd", "--channel", "e2e", "--broker-kind", "nats",
                                       "--broker", ports.map { "mqtt://127.0.0.1:\($0)" }.joined(separator: ","), "--manager-url", "http://127.0.0.1:\(httpPort)"])
        try #require(provision.status == 0, "\(provision.stderrText)")
        var st = stat()
        #expect(stat(out + "/nats/propeller-users.conf", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(readFile(out + "/nats/propeller.conf")?.contains("include ./propeller-users.conf") == true)
        let proplets = (readFile(out + "/deployment.conf") ?? "").split(separator: "\n").filter { $0.hasPrefix("proplet = ") }.map { String($0.dropFirst(10)) }
        try #require(proplets.count == 2)
        let (p1, p2) = (proplets[0], proplets[1])
        let nats = try NATSCluster(mqttPorts: ports, extra: "include ./propeller-users.conf", links: ["propeller-users.conf": out + "/nats/propeller-users.conf"])
        let topics = Topics(domain: "natsd", channel: "e2e")
        let password = { (user: String) -> String in
            let file = user.hasPrefix("proplet-") ? out + "/proplets/\(user).conf" : out + "/" + (user == "propeller-manager" ? "manager" : "proxy") + ".conf"
            return self.setting("mqtt-password", in: file) ?? ""
        }

        // The whole path over NATS with the provisioned identities.
        let registry = try ImageTestContext().registry(holding: "app:v1")
        defer { registry.stop() }
        let manager = try DaemonProcess(propellerBinary, ["manager", "--config", out + "/manager.conf", "--data-dir", dir.path + "/manager",
                                                          "--liveliness-interval", "1s", "--log-level", "debug"], logPath: dir.path + "/manager.log")
        defer { manager.stop() }
        try waitFor { canConnect(port: httpPort) }
        let proplet = try DaemonProcess(propellerBinary, ["proplet", "--config", out + "/proplets/\(p1).conf", "--data-dir", dir.path + "/proplet",
                                                          "--image-source", "direct", "--liveliness-interval", "1s", "--log-level", "debug"],
                                        logPath: dir.path + "/proplet.log")
        defer { proplet.stop() }
        let cli = ["--config", out + "/cli.conf"]
        try waitFor(seconds: 20) {
            guard let r = try? propeller(["proplet", "get", p1, "--json"] + cli), r.status == 0 else { return false }
            return (try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])?["alive"] as? Bool == true
        }
        var hello = try propeller(["task", "create", "hello", "--image", "\(registry.address)/app:v1", "--wait"] + cli)
        for _ in 0..<50 where hello.status != 0 && hello.stderrText.contains("no proplet") {
            usleep(200_000)  // the proplet may not have announced itself yet
            hello = try propeller(["task", "create", "hello", "--image", "\(registry.address)/app:v1", "--wait"] + cli)
        }
        #expect(hello.status == 0 && hello.stdoutText == "hi from layer two in /home/app as app with hello\n",
                "\(hello.stdoutText)\(hello.stderrText)\n\(manager.log.suffix(3000))\n\(proplet.log.suffix(3000))")

        // p2 may not speak for p1, nor read p1's commands, nor everything.
        let before = nats.violations()
        _ = try mqtt("mosquitto_pub", nats, node: 1, user: p2, password: password(p2), ["-t", topics.report(.alive, from: p1), "-m", "{}"])
        _ = try mqtt("mosquitto_pub", nats, node: 1, user: p2, password: password(p2), ["-t", topics.report(.results, from: p1), "-m", "{}"])
        _ = try mqtt("mosquitto_sub", nats, node: 2, user: p2, password: password(p2), ["-t", topics.start(p1), "-C", "1", "-W", "2"], timeout: 10)
        _ = try mqtt("mosquitto_sub", nats, node: 2, user: p2, password: password(p2), ["-t", "#", "-C", "1", "-W", "2"], timeout: 10)
        try waitFor { nats.violations() >= before + 4 }
        #expect(nats.violations() >= before + 4, "NATS refused both publishes as another proplet and both subscriptions")
        // A wrong password is refused.
        let wrong = try mqtt("mosquitto_pub", nats, node: 0, user: p2, password: "not-it", ["-t", topics.report(.alive, from: p2), "-m", "{}"])
        #expect(wrong.status != 0, "\(wrong.stderr)")

        // A proplet added later works once the nodes reload their users.
        let added = try propeller(["provision", "add-proplet", "--out", out])
        try #require(added.status == 0, "\(added.stderrText)")
        let p3 = (readFile(out + "/deployment.conf") ?? "").split(separator: "\n").filter { $0.hasPrefix("proplet = ") }.map { String($0.dropFirst(10)) }.last ?? ""
        #expect(p3 != p2 && readFile(out + "/nats/propeller-users.conf")?.contains("\"\(p3)\"") == true)
        nats.reload()
        var published = (status: Int32(1), stdout: "", stderr: "")
        for _ in 0..<30 where published.status != 0 {
            usleep(200_000)
            published = try mqtt("mosquitto_pub", nats, node: 0, user: p3, password: password(p3), ["-t", topics.report(.alive, from: p3), "-m", "{}"])
        }
        #expect(published.status == 0, "\(published.stderr)")
    }

    func waitFor(seconds: Double = 5, _ condition: () -> Bool) throws {
        for _ in 0..<Int(seconds * 10) where !condition() { usleep(100_000) }
    }
}
