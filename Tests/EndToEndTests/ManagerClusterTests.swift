import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// README's recipe, from real processes: three `propeller manager`s on one PostgreSQL 15, a
/// three-node NATS cluster carrying MQTT (each daemon starting at a node of its own), a registry,
/// the proxy and a proplet. One manager leads, the others forward; the leader dies mid-workload,
/// is cut off from the database, a broker node dies: another takes over each time, nothing is
/// lost and nothing starts twice.
@Suite("Several managers", .enabled(if: isRoot, "requires root: proplets create namespaces and cgroups"),
       .enabled(if: PostgresServer.isInstalled, "requires PostgreSQL 15 (scripts/setup installs it)"),
       .enabled(if: NATSCluster.isInstalled, "requires nats-server (scripts/setup installs it)"))
final class ManagerClusterTests: Sendable {
    /// Each manager's `/health`: its role, its id, the leader it knows and the epoch.
    func health(_ c: Cluster, _ i: Int) -> [String: Any]? {
        guard let body = httpGet(port: c.managerPorts[i], "/health") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
    }

    /// Waits until exactly one of `alive` leads and the others follow it; the leader's index.
    func electedLeader(_ c: Cluster, among alive: [Int]) throws -> Int {
        var leader = -1
        try c.waitUntil("one leader among managers \(alive)", timeout: 30) {
            let roles = alive.map { (index: $0, health: health(c, $0)) }
            let leaders = roles.filter { $0.health?["role"] as? String == "leader" }
            guard leaders.count == 1, let id = leaders[0].health?["id"] as? String else { return false }
            leader = leaders[0].index
            // Every follower knows who leads (it forwards there).
            return roles.allSatisfy { ($0.health?["leader"] as? [String: Any])?["id"] as? String == id }
        }
        return leader
    }

    @Test func theLeaderDiesMidWorkloadAndAnotherTakesOverLosingNothing() throws {
        let postgres = try PostgresServer()
        let c = try Cluster(store: postgres.url(), managers: 3, nats: NATSCluster())
        let first = try electedLeader(c, among: [0, 1, 2])
        let follower = (first + 1) % 3
        c.defaultManager = follower
        try c.startProplet("p", memory: "4G")
        // Everything through a follower: it forwards to the leader.
        var tasks: [String: String] = [:]
        for i in 0..<6 {
            let r = try c.cli(["task", "create", "w\(i)", "--image", c.image, "--start", "--memory", "64M", "--", "sh", "-c", "sleep 2; echo done-\(i)"], via: follower)
            try #require(r.status == 0, "\(r.stderrText)")
            tasks[r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)] = "done-\(i)\n"
        }
        // The leader's audit log names the caller's address and the follower that forwarded it.
        let audit = try c.cli(["audit", "-o", "json"], via: first)
        #expect(audit.stdoutText.contains("\"127.0.0.1 via m\(follower)\""), "\(audit.stdoutText.suffix(1500))")
        // And an actor with messages queued in its inbox.
        let created = try c.cli(["actor", "create", "echo", "--image", c.image, "--memory", "64M", "--", "/bin/sh", "-c",
                                 #"sleep 0.5; printf 'out-%s' "$MSG" > "$PROPELLER_RESULTS""#])
        try #require(created.status == 0, "\(created.stderrText)")
        let actor = created.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        var messages: [String: String] = [:]
        for i in 0..<8 {
            let r = try c.cli(["actor", "send", actor, "m\(i)"])
            try #require(r.status == 0, "send m\(i): \(r.stderrText)")
            messages[r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)] = "out-m\(i)"
        }
        let status = try c.cli(["manager", "status"], via: follower)
        #expect(status.status == 0 && status.stdoutText.contains("m\(first)") && status.stdoutText.contains("leader"), "\(status.stdoutText)\(status.stderrText)")
        let epoch = try #require(health(c, first)?["epoch"] as? Int)

        // The leader dies with tasks running and a proplet talking to it.
        try c.waitUntil("a task running", timeout: 30) { try tasks.keys.contains { try c.task($0)["state"] as? String == "running" } }
        c.crashManager(first)
        let survivors = [0, 1, 2].filter { $0 != first }
        let second = try electedLeader(c, among: survivors)
        #expect(try #require(health(c, second)?["epoch"] as? Int) > epoch, "a new leader, a new epoch")
        let other = survivors.first { $0 != second } ?? second
        c.defaultManager = other

        // Every task ends with its real result, started once.
        for (id, output) in tasks {
            var done: [String: Any] = [:]
            try c.waitUntil("task \(id) completed", timeout: 60) {
                done = (try? c.task(id)) ?? [:]
                return done["state"] as? String == "completed"
            }
            #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == output)
            #expect(done["attempt"] as? Int == 1, "started once: \(done)")
        }
        // Every message ran once, with its result.
        try c.waitUntil("8 executions complete", timeout: 90) {
            let r = try c.cli(["actor", "executions", actor, "--json", "--limit", "100"])
            let list = (try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])?["executions"] as? [[String: Any]] ?? []
            return list.count == 8 && list.allSatisfy { $0["status"] as? String == "complete" }
        }
        for (id, result) in messages {
            let got = try c.cli(["actor", "results", actor, id])
            let execution = try c.cli(["actor", "executions", actor, id, "--json"])
            #expect(got.stdoutText == result, "\(id): \(got.stdoutText) \(got.stderrText) \(execution.stdoutText)")
        }
        let sync = try c.cli(["actor", "send", actor, "sync", "--sync"])
        #expect(sync.status == 0 && sync.stdoutText == "out-sync", "a synchronous call through a follower: \(sync.stdoutText) \(sync.stderrText)")
        // New work and a synchronous wait through the remaining follower.
        let waited = try c.cli(["task", "create", "after", "--image", c.image, "--start", "--wait", "--", "echo", "after failover"], via: other)
        #expect(waited.status == 0, "\(waited.stderrText)")
        #expect(waited.stdoutText.contains("after failover"), "\(waited.stdoutText)")

        // The dead manager comes back with an empty data directory and follows.
        try c.startManager(first, emptyData: true)
        #expect(try electedLeader(c, among: [0, 1, 2]) == second, "the leader stays")
        let again = try c.cli(["manager", "status", "--json"], via: first)
        let members = (try JSONSerialization.jsonObject(with: again.stdout) as? [String: Any])?["members"] as? [[String: Any]] ?? []
        #expect(Set(members.compactMap { $0["id"] as? String }) == ["m0", "m1", "m2"], "\(again.stdoutText)")
        #expect(members.filter { $0["role"] as? String == "leader" }.count == 1)
        // A log stream through a follower: forwarded as it is written.
        let streamed = try c.cli(["task", "create", "stream", "--image", c.image, "--start", "--", "sh", "-c", "echo one; sleep 1; echo two"], via: first)
        try #require(streamed.status == 0, "\(streamed.stderrText)")
        let follow = try c.cli(["task", "logs", streamed.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), "--follow"], via: first)
        #expect(follow.status == 0 && follow.stdoutText == "one\ntwo\n", "\(follow.stdoutText)\(follow.stderrText)")
    }

    /// The leader's database sessions freeze (a network that drops everything, a stuck server
    /// process): it cannot renew its lease, steps down before the lease expires, and the other
    /// manager takes over under a higher epoch; once the sessions thaw, nothing of the old
    /// leader lands, and no task runs twice.
    @Test func aLeaderCutOffFromTheDatabaseStepsDownAndTheOtherTakesOver() throws {
        let postgres = try PostgresServer()
        let c = try Cluster(store: postgres.url(), managers: 3, nats: NATSCluster())
        let first = try electedLeader(c, among: [0, 1, 2])
        c.defaultManager = (first + 1) % 3
        try c.startProplet("p", memory: "4G")
        let before = try c.create("before", command: ["sh", "-c", "sleep 4; echo before"])
        try c.waitFor(before, state: "running")
        let epoch = try #require(health(c, first)?["epoch"] as? Int)

        let sessions = try postgres.sessions(of: "propeller-manager-m\(first)")
        try #require(!sessions.isEmpty, "the leader's sessions are named after it")
        for pid in sessions { kill(pid, SIGSTOP) }
        defer { for pid in sessions { kill(pid, SIGCONT) } }
        try c.waitUntil("m\(first) steps down", timeout: 30) { health(c, first)?["role"] as? String != "leader" }
        let other = try electedLeader(c, among: [0, 1, 2].filter { $0 != first })
        c.defaultManager = other
        #expect(try #require(health(c, other)?["epoch"] as? Int) > epoch)
        #expect(c.managers[first]?.log.contains("stepping down") == true)

        // Work goes on under the new leader, also through the manager that stepped down.
        let after = try c.create("after", command: ["echo", "after"])
        #expect((try c.waitFor(after, state: "completed", timeout: 30)["result"] as? [String: Any])?["stdout_tail"] as? String == "after\n")
        for pid in sessions { kill(pid, SIGCONT) }
        let done = try c.waitFor(before, state: "completed", timeout: 30)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "before\n")
        #expect(done["attempt"] as? Int == 1, "started once: \(done)")
        let through = try c.cli(["task", "get", after, "--json"], via: first)
        #expect(through.status == 0, "the old leader forwards now: \(through.stderrText)")
    }

    /// A broker node dies: the node the leading manager uses is killed while a task runs, and
    /// the leader moves on to the next node (with its MQTT session); the task ends with its real
    /// result and new work runs.
    @Test func aBrokerNodeDiesAndTheControlPlaneMovesOn() throws {
        let postgres = try PostgresServer()
        let nats = try NATSCluster()
        let c = try Cluster(store: postgres.url(), managers: 3, nats: nats)
        let leader = try electedLeader(c, among: [0, 1, 2])
        try c.startProplet("p", memory: "4G")
        let first = try c.create("first", command: ["echo", "over nats"])
        #expect((try c.waitFor(first, state: "completed")["result"] as? [String: Any])?["stdout_tail"] as? String == "over nats\n")

        let across = try c.create("across", command: ["sh", "-c", "sleep 3; echo survived"])
        try c.waitFor(across, state: "running")
        nats.kill(leader)  // manager i starts at node i; the proplet at node 1, the proxy at node 2
        let done = try c.waitFor(across, state: "completed", timeout: 60)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "survived\n")
        #expect(done["attempt"] as? Int == 1)
        let after = try c.create("after", command: ["echo", "after the node died"])
        #expect((try c.waitFor(after, state: "completed", timeout: 60)["result"] as? [String: Any])?["stdout_tail"] as? String == "after the node died\n")
    }

    /// A follower relays request bodies to the leader. Requests the leader answers before it has
    /// read them (a wrong token, a body over the limit), bodies that trickle in and callers that
    /// hang up halfway must each get an answer or be dropped, and leave the follower serving.
    @Test func aFollowerRelaysAbandonedAndRefusedBodiesAndStaysUp() throws {
        let postgres = try PostgresServer()
        let c = try Cluster(store: postgres.url(), managers: 2)
        let leader = try electedLeader(c, among: [0, 1])
        let follower = 1 - leader
        let port = c.managerPorts[follower]
        /// Sends a POST whose body arrives in pieces; the status line of the answer, or nil when
        /// the caller hangs up after `sendOnly` bytes.
        func post(token: String, length: Int, sendOnly: Int? = nil, pause: UInt32 = 2_000) -> String? {
            guard let fd = connectLoopback(port: port) else { return "no connection" }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let head = "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(length)\r\n\r\n"  // kept alive: the server reads what follows
            _ = Array(head.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            let piece = [UInt8](repeating: UInt8(ascii: " "), count: 16 << 10)
            var sent = 0
            while sent < (sendOnly ?? length) {
                let n = min(piece.count, (sendOnly ?? length) - sent)
                let wrote = piece.withUnsafeBytes { send(fd, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }
                if wrote <= 0 { break }  // the other side answered and closed
                sent += wrote
                usleep(pause)
            }
            if sendOnly != nil { return nil }
            var answer: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                answer += buffer[0..<n]
                if answer.count >= 4, answer.indices.dropLast(3).contains(where: { answer[$0..<$0 + 4].elementsEqual("\r\n\r\n".utf8) }) { break }
            }
            return String(decoding: answer, as: UTF8.self).split(separator: "\r\n").first.map(String.init)
        }
        for round in 0..<3 {
            let refused = post(token: "wrong-\(round)", length: 512 << 10)
            #expect(refused?.contains("401") == true, "a wrong token: \(refused ?? "hung up")")
            let large = post(token: c.token, length: 4 << 20)
            #expect(large?.contains("413") == true, "a body over the limit: \(large ?? "hung up")")
            _ = post(token: c.token, length: 256 << 10, sendOnly: 100 << 10)
            guard health(c, follower)?["role"] as? String == "follower" else {
                let log = c.managers[follower]?.log ?? ""
                let crash = log.range(of: "Fatal error").map { log[$0.lowerBound...].prefix(4000) } ?? log.suffix(4000)
                Issue.record("the follower is down after round \(round): \(crash)")
                return
            }
        }
        // The leader stalls while a body trickles through the follower: the follower stops
        // relaying it (it leads now) and goes on.
        let stalled = try #require(c.managers[leader]?.pid)
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { kill(stalled, SIGSTOP) }
        defer { kill(stalled, SIGCONT) }
        let cut = post(token: c.token, length: 800 << 10, pause: 100_000)
        #expect(cut?.hasPrefix("HTTP/1.1 50") == true, "told to send again when the leader changed mid-request: \(cut ?? "hung up")")
        try c.waitUntil("m\(follower) leads", timeout: 30) { health(c, follower)?["role"] as? String == "leader" }
        // And it still takes well-formed work.
        let r = try c.cli(["task", "create", "after", "--image", c.image], via: follower)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(!c.managers[follower]!.log.contains("Fatal error"), "the follower did not crash")
    }
}
