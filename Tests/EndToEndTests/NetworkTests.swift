import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// `--network bridge` through the real CNI plugins: a task serves HTTP on a published port
/// reached from the host's loopback, another task on the bridge reaches it, a second task
/// asking for the same host port waits, and nothing is left behind (veth, iptables rules,
/// address leases), also after the proplet is killed. Traffic stays between the tasks'
/// namespaces and this host.
@Suite("Bridge networks through CNI", .serialized, .enabled(if: isRoot, "requires root: proplets create namespaces, bridges and iptables rules"),
       .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/lib/cni/bridge"), "requires the CNI plugins (scripts/setup installs containernetworking-plugins)"))
final class NetworkTests {
    /// A bridge and a subnet of this test's own, so that tests and a host's own bridges do not meet.
    let bridge = "ptest" + String(UInt32.random(in: 0..<100_000))
    let octet = Int.random(in: 100..<200)
    var subnet: String { "10.\(octet).\(Int.random(in: 0..<250)).0/24" }

    deinit {
        _ = try? runProcess("/sbin/ip", ["link", "del", bridge], timeout: 10)
    }


    /// GET `path` from 127.0.0.1:`port`; the body, or nil.
    func fetch(port: Int, _ path: String = "/") -> String? { httpGet(port: port, path) }

    /// What the host still has of this test's network: veths on its bridge, iptables rules that
    /// name its subnet or CNI chains, leases.
    func leftovers(subnet: String, state: String) throws -> [String] {
        var found: [String] = []
        let links = try runProcess("/sbin/ip", ["-o", "link", "show", "master", bridge], timeout: 10)
        found += String(decoding: links.stdout, as: UTF8.self).split(separator: "\n").map { "veth: \($0.prefix(80))" }
        let prefix = String(subnet.split(separator: "/")[0].dropLast(2))  // "10.x.y."
        for table in ["nat", "filter"] {
            let rules = try runProcess("/usr/sbin/iptables-save", ["-t", table], timeout: 10)
            found += String(decoding: rules.stdout, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("-A") && $0.contains(prefix) }.map { "iptables \(table): \($0)" }
        }
        let leases = (try? FileManager.default.contentsOfDirectory(atPath: state + "/ipam/bridge")) ?? []
        found += leases.filter { $0.hasPrefix("10.") }.map { "lease \($0)" }
        found += ((try? FileManager.default.contentsOfDirectory(atPath: state + "/results")) ?? []).map { "kept result \($0)" }
        found += ((try? FileManager.default.contentsOfDirectory(atPath: state + "/netns")) ?? []).map { "pinned namespace \($0)" }
        found += (readFile("/proc/self/mountinfo") ?? "").split(separator: "\n").filter { $0.contains(state) }.map { "mount \($0.prefix(120))" }
        return found
    }

    @Test func aServiceIsReachedOnItsPublishedPortAndByItsNeighbour() throws {
        let c = try Cluster()
        let subnet = self.subnet
        try c.startProplet("p", memory: "2G", extra: ["--bridge-name", bridge, "--bridge-subnet", subnet])
        #expect((try c.proplet("p")?["networks"] as? [String]) == ["bridge"])
        let port = try freeLoopbackPort()
        let server = try c.create("web", ["--network", "bridge", "--publish", "\(port):8080", "--volume", "share:/share"], command: ["sh", "-c", """
            mkdir -p /tmp/www && echo hello-from-the-task > /tmp/www/index.html
            hostname -i > /share/addr
            exec busybox httpd -f -p 8080 -h /tmp/www
            """])
        try c.waitFor(server, state: "running")
        var body: String?
        try c.waitUntil("the published port answers", timeout: 20) {
            body = fetch(port: port, "/index.html")
            return body != nil
        }
        #expect(body == "hello-from-the-task\n")
        let record = try c.task(server)
        #expect((record["ports"] as? [[String: Any]])?.first?["host_port"] as? Int == port, "\(record)")

        // A neighbour on the bridge reaches it at its address; its resolv.conf and hosts are its own.
        let neighbour = try c.create("neighbour", ["--network", "bridge", "--volume", "share:/share:ro"], command: ["sh", "-c", """
            busybox wget -q -O - "http://$(cat /share/addr):8080/index.html"
            grep -c "$(hostname)" /etc/hosts
            """])
        let n = try c.waitForEnd(neighbour)
        #expect(n["state"] as? String == "completed", "\(n)")
        #expect((n["result"] as? [String: Any])?["stdout_tail"] as? String == "hello-from-the-task\n1\n", "\(n)")

        // The same host port again: it waits, saying why.
        let second = try c.create("web2", ["--network", "bridge", "--publish", "\(port):8080"], command: ["sleep", "30"])
        try c.waitUntil("the second server waits for the port", timeout: 15) {
            let t = try c.task(second)
            return t["state"] as? String == "pending" && (t["reason"] as? String)?.contains("host port \(port)/tcp") == true
        }
        // A port picked by the manager.
        let picked = try c.create("picked", ["--network", "bridge", "--publish", ":8080"], command: ["sleep", "30"])
        try c.waitFor(picked, state: "running")
        let pickedPort = try #require((try c.task(picked)["ports"] as? [[String: Any]])?.first?["host_port"] as? Int)
        #expect(pickedPort >= 20000 && pickedPort <= 32767)

        for id in [server, second, picked] { _ = try c.cli(["task", "stop", id, "--grace", "0"]) }
        for id in [server, second, picked] { _ = try c.waitForEnd(id) }
        try c.waitUntil("the proplet detached every task", timeout: 20) {
            try self.leftovers(subnet: subnet, state: c.dir.path + "/proplet-p/cni").isEmpty
        }
    }

    /// A proplet killed while its tasks are attached cleans up at its next start.
    @Test func aKilledProppletLeavesNothingOnTheNetworkAfterItsRestart() throws {
        let c = try Cluster()
        let subnet = self.subnet
        let state = c.dir.path + "/proplet-p/cni"
        try c.startProplet("p", memory: "2G", extra: ["--bridge-name", bridge, "--bridge-subnet", subnet])
        let port = try freeLoopbackPort()
        let id = try c.create("web", ["--network", "bridge", "--publish", "\(port):8080"], command: ["busybox", "httpd", "-f", "-p", "8080"])
        try c.waitFor(id, state: "running")
        #expect(!(try leftovers(subnet: subnet, state: state)).isEmpty, "attached: a veth, rules and a lease exist")
        c.crashProplet("p")
        try c.startProplet("p", memory: "2G", extra: ["--bridge-name", bridge, "--bridge-subnet", subnet])
        try c.waitUntil("the restarted proplet cleaned up", timeout: 20) { try self.leftovers(subnet: subnet, state: state).isEmpty }
        #expect(c.proplets["p"]?.log.contains("detached a container a previous run left on a network") == true)
    }

    /// An operator's network (a configuration list in --cni-dir) is offered by its name; 100
    /// tasks run on it and leave nothing behind; a network no proplet offers is never placed.
    @Test func anOperatorsNetworkRunsTasksAndLeavesNothingBehind() throws {
        let c = try Cluster()
        let subnet = self.subnet
        let state = c.dir.path + "/proplet-p/cni"
        let lists = c.dir.path + "/cni"
        mkdirs(lists)
        writeFile(lists + "/storage.conflist", """
            {"cniVersion": "1.0.0", "name": "storage", "plugins": [
              {"type": "bridge", "bridge": "\(bridge)", "isGateway": true, "ipMasq": false,
               "ipam": {"type": "host-local", "ranges": [[{"subnet": "\(subnet)"}]], "dataDir": "\(state)/ipam"}}]}
            """)
        try c.startProplet("p", memory: "2G", maxTasks: 8, extra: ["--cni-dir", lists, "--bridge-name", bridge + "b", "--bridge-subnet", self.subnet])
        defer { _ = try? runProcess("/sbin/ip", ["link", "del", bridge + "b"], timeout: 10) }
        #expect((try c.proplet("p")?["networks"] as? [String]) == ["bridge", "storage"])
        let ids = try (0..<100).map { i in try c.create("run-\(i)", ["--network", "storage"], command: ["sh", "-c", "ip -o -4 addr show eth0 | grep -c '\(subnet.dropLast(4))'"]) }
        for id in ids {
            let t = try c.waitForEnd(id, timeout: 120)
            #expect(t["state"] as? String == "completed" && (t["result"] as? [String: Any])?["stdout_tail"] as? String == "1\n", "\(t)")
        }
        try c.waitUntil("nothing left on the network", timeout: 20) {
            try self.leftovers(subnet: subnet, state: state).filter { !$0.hasPrefix("lease") }.isEmpty
                && ((try? FileManager.default.contentsOfDirectory(atPath: state + "/ipam/storage")) ?? []).allSatisfy { !$0.hasPrefix("10.") }
        }
        let nowhere = try c.create("nowhere", ["--network", "overlay"], command: ["true"])
        let refused = try c.waitForEnd(nowhere)
        #expect(refused["reason"] as? String == "no proplet offers the network overlay", "\(refused)")
    }

    /// An actor's executions on the bridge: each has an address of the proplet's subnet.
    @Test func anActorsExecutionsRunOnTheBridge() throws {
        let c = try Cluster()
        let subnet = self.subnet
        try c.startProplet("p", memory: "2G", extra: ["--bridge-name", bridge, "--bridge-subnet", subnet])
        let created = try c.cli(["actor", "create", "netted", "--image", c.image, "--memory", "64M", "--network", "bridge", "--",
                                 "/bin/sh", "-c", #"ip -o -4 addr show eth0 | awk '{print $4}' > "$PROPELLER_RESULTS""#])
        #expect(created.status == 0, "\(created.stderrText)")
        let actor = created.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        var reply = try c.cli(["actor", "send", actor, "x", "--sync"])
        for _ in 0..<100 where reply.status != 0 {
            usleep(200_000)  // the worker may still be pulling
            reply = try c.cli(["actor", "send", actor, "x", "--sync"])
        }
        let prefix = String(subnet.split(separator: "/")[0].dropLast(2))
        let address = reply.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(address.hasPrefix(prefix) && address.hasSuffix("/24"), "\(reply.stdoutText) \(reply.stderrText)")
        _ = try c.cli(["actor", "delete", actor])
        try c.waitUntil("nothing left on the network", timeout: 20) { try self.leftovers(subnet: subnet, state: c.dir.path + "/proplet-p/cni").isEmpty }
    }
}
