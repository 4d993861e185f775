import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Actors end to end: real mosquitto, docker-registry, proxy, manager and proplets, driven by
/// the CLI.
@Suite("Actors", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"))
struct ActorTests {
    /// Writes "out-MSG" as its result and "got MSG" to stdout.
    static let echo = ["/bin/sh", "-c", #"echo "got $MSG"; echo "greeting=$GREETING" >&2; printf 'out-%s' "$MSG" > "$PROPELLER_RESULTS""#]

    func createActor(_ c: Cluster, _ name: String, _ flags: [String], command: [String]) throws -> String {
        let r = try c.cli(["actor", "create", name, "--image", c.image] + flags + ["--"] + command)
        #expect(r.status == 0, "actor create: \(r.stderrText)")
        return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func json(_ c: Cluster, _ args: [String]) throws -> [String: Any] {
        let r = try c.cli(args + ["--json"])
        guard r.status == 0, let object = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else {
            throw PropellerError(.internalError, "\(args.joined(separator: " ")) failed: \(r.stderrText)")
        }
        return object
    }

    func executions(_ c: Cluster, _ actor: String) throws -> [[String: Any]] {
        try json(c, ["actor", "executions", actor, "--limit", "1000"])["executions"] as? [[String: Any]] ?? []
    }

    func waitReady(_ c: Cluster, _ actor: String) throws {
        try c.waitUntil("actor \(actor) ready", timeout: 60) { try json(c, ["actor", "get", actor])["status"] as? String == "ready" }
    }

    @Test func fiftyMessagesOnThreeWorkersAcrossTwoProplets() throws {
        let c = try Cluster()
        try c.startProplet("pa", memory: "1G")
        try c.startProplet("pb", memory: "1G")
        // 400 MiB per worker: a proplet holds two, so the third worker goes to the other one.
        // Each takes a second, longer than a `propeller actor send` even on a loaded machine, so the
        // inbox fills and the autoscaler adds workers.
        let actor = try createActor(c, "echo", ["--max-workers", "3", "--memory", "400M", "--env", "GREETING=hola"],
                                    command: ["/bin/sh", "-c", "sleep 1; " + Self.echo[2]])
        try waitReady(c, actor)
        var ids: [String: Int] = [:]
        for i in 0..<50 {
            let r = try c.cli(["actor", "send", actor, "m\(i)"])
            try #require(r.status == 0, "send: \(r.stderrText)")
            ids[r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)] = i
        }
        #expect(ids.count == 50)
        try c.waitUntil("50 executions complete", timeout: 120) {
            try executions(c, actor).filter { $0["status"] as? String == "complete" }.count == 50
        }
        let list = try executions(c, actor)
        #expect(Set(list.compactMap { $0["proplet_id"] as? String }) == ["pa", "pb"], "executions ran on both proplets")
        #expect(Set(list.compactMap { $0["worker_id"] as? String }).count == 3, "three workers took messages")
        for (id, i) in ids {
            let results = try c.cli(["actor", "results", actor, id])
            #expect(results.stdoutText == "out-m\(i)", "results of message \(i)")
            let logs = try json(c, ["actor", "logs", actor, id])
            #expect(logs["stdout"] as? String == "got m\(i)\n")
            #expect(logs["stderr"] as? String == "greeting=hola\n")
        }
        let totals = try json(c, ["actor", "executions", actor])["totals"] as? [String: Any]
        #expect(totals?["count"] as? Int == 50 && totals?["complete"] as? Int == 50)
        #expect((totals?["cpu_usec"] as? Int ?? 0) > 0 && (totals?["runtime"] as? Double ?? 0) > 0)

        // --sync answers with the results; a failing execution exits 1 with its error.
        let sync = try c.cli(["actor", "send", actor, "now", "--sync"])
        #expect(sync.status == 0 && sync.stdoutText == "out-now", "sync: \(sync.stdoutText) \(sync.stderrText)")
        let vars = try c.cli(["actor", "send", actor, "x", "--var", "GREETING=from-query", "--sync"])
        #expect(vars.status == 0)
        // Its name works wherever its id does (and an id prefix).
        let named = try c.cli(["actor", "send", "echo", "by-name", "--sync"])
        #expect(named.status == 0 && named.stdoutText == "out-by-name", "\(named.stdoutText) \(named.stderrText)")
        #expect(try c.cli(["actor", "get", String(actor.prefix(6))]).status == 0)

        // Deleting the actor stops its workers and gives their room back.
        let deleted = try c.cli(["actor", "delete", actor])
        #expect(deleted.status == 0)
        #expect(try c.cli(["actor", "get", actor]).status != 0)
        try c.waitUntil("worker reservations released", timeout: 30) {
            try ["pa", "pb"].allSatisfy { id in
                let allocated = try c.proplet(id)?["allocated"] as? [String: Any]
                return (allocated?["memory_bytes"] as? Int ?? -1) == 0
            }
        }
    }

    @Test func binaryStateSyncAndBadInput() throws {
        let c = try Cluster()
        try c.startProplet("pa", memory: "1G")
        // Binary: the message file comes back byte for byte as the result.
        let copier = try createActor(c, "copier", ["--memory", "64M"], command: ["/bin/sh", "-c", #"cat "$PROPELLER_MESSAGE_FILE" > "$PROPELLER_RESULTS""#])
        try waitReady(c, copier)
        var bytes = [UInt8](repeating: 0, count: 100_000)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
        let file = c.dir.path + "/blob.bin"
        _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
        let sent = try c.cli(["actor", "send", copier, "--file", file, "--sync"])
        #expect(sent.status == 0, "\(sent.stderrText)")
        #expect(Array(sent.stdout) == bytes, "binary message round-trips byte for byte")

        // State: each execution adds one to a counter kept in the actor's state.
        let counter = try createActor(c, "counter", ["--memory", "64M", "--stateful"], command: ["/bin/sh", "-c",
            #"n=$(sed 's/[^0-9]//g' "$PROPELLER_STATE"); n=$((${n:-0} + 1)); printf '{"count": %s}' $n > "$PROPELLER_STATE"; printf '%s' $n > "$PROPELLER_RESULTS""#])
        try waitReady(c, counter)
        for expected in 1...3 {
            let r = try c.cli(["actor", "send", counter, "tick", "--sync"])
            #expect(r.stdoutText == String(expected), "execution \(expected) saw the state: \(r.stdoutText) \(r.stderrText)")
        }
        let state = try c.cli(["actor", "get", counter, "--json"])
        #expect(state.status == 0)
        let stateBody = try curl(c, "GET", "/actors/\(counter)/state")
        #expect(stateBody.contains("\"count\": 3"), "state: \(stateBody)")

        // Bad input: clear 4xx errors, nothing queued.
        let unknown = try c.cli(["actor", "send", "no-such-actor", "hi"])
        #expect(unknown.status != 0 && unknown.stderrText.contains("no actor no-such-actor"), "\(unknown.stderrText)")
        let big = c.dir.path + "/big.bin"
        _ = FileManager.default.createFile(atPath: big, contents: Data(count: (1 << 20) + 1))
        let tooBig = try c.cli(["actor", "send", copier, "--file", big])
        #expect(tooBig.status != 0 && tooBig.stderrText.contains("larger than"), "\(tooBig.stderrText)")
        let badJSON = try c.cli(["actor", "send", copier, "{not json", "--content-type", "application/json"])
        #expect(badJSON.status != 0 && badJSON.stderrText.contains("not valid JSON"), "\(badJSON.stderrText)")
        let badVar = try c.cli(["actor", "send", copier, "x", "--var", "PROPELLER_ACTOR_ID=x"])
        #expect(badVar.status != 0 && badVar.stderrText.contains("set by Propeller"))
        let badCreate = try c.cli(["actor", "create", "x", "--image", c.image, "--stateful", "--max-workers", "2"])
        #expect(badCreate.status != 0 && badCreate.stderrText.contains("one worker at most"))
        #expect(try json(c, ["actor", "executions", copier])["total"] as? Int == 1, "refused messages were not queued")

        // An image that cannot be pulled puts the actor in error with the reason.
        let missing = try c.cli(["actor", "create", "missing", "--image", "\(c.registry.address)/nothing:here", "--memory", "64M"])
        let missingID = missing.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        try c.waitUntil("actor in error", timeout: 60) { try json(c, ["actor", "get", missingID])["status"] as? String == "error" }
        #expect((try json(c, ["actor", "get", missingID])["message"] as? String ?? "").contains("nothing"))
    }

    /// An actor's executions get its volumes, tmpfs and secrets as a task's: each message adds
    /// a line to a named volume that the next one sees, and reads a secret that is nowhere else.
    @Test func executionsGetTheActorsVolumesAndSecrets() throws {
        let c = try Cluster()
        try c.startProplet("pa", memory: "1G")
        let value = "actor-secret-" + UUID().uuidString
        writeFile(c.dir.path + "/value", value)
        #expect(try c.cli(["secret", "create", "token", "--from-file", c.dir.path + "/value"]).status == 0)
        unlink(c.dir.path + "/value")
        let digest = SHA256.hash(Array(value.utf8)).map { String(format: "%02x", $0) }.joined()
        let id = try createActor(c, "journal", ["--memory", "64M", "--volume", "journal:/journal", "--tmpfs", "/scratch:size=1M", "--secret", "token:/etc/token"],
                                 command: ["/bin/sh", "-c", #"echo "$MSG" >> /journal/lines && touch /scratch/x && busybox sha256sum /etc/token | cut -c1-64 > "$PROPELLER_RESULTS" && wc -l < /journal/lines >> "$PROPELLER_RESULTS""#])
        try waitReady(c, id)
        for i in 1...3 {
            let r = try c.cli(["actor", "send", id, "m\(i)", "--sync"])
            #expect(r.stdoutText.replacingOccurrences(of: " ", with: "") == "\(digest)\n\(i)\n", "execution \(i): \(r.stdoutText) \(r.stderrText)")
        }
        #expect(readFile(c.dir.path + "/proplet-pa/volumes/journal/lines") == "m1\nm2\nm3\n")
        let shown = try c.cli(["actor", "get", id, "--json"])
        #expect(shown.stdoutText.contains("\"journal\"") && !shown.stdoutText.contains(value))
        #expect(c.proplets["pa"]?.log.contains(value) == false && c.managers[0]?.log.contains(value) == false)
        let bad = try c.cli(["actor", "create", "bad", "--image", c.image, "--volume", "x:/propeller/y"])
        #expect(bad.status != 0 && bad.stderrText.contains("/propeller"), "\(bad.stderrText)")
    }

    @Test func aMessageWhosePropletDiesRunsAgainElsewhere() throws {
        let c = try Cluster()
        try c.startProplet("pa", memory: "1G")
        let actor = try createActor(c, "slow", ["--memory", "64M"], command: ["/bin/sh", "-c", #"sleep 2; printf 'done on %s' "$PROPELLER_WORKER_ID" > "$PROPELLER_RESULTS""#])
        try waitReady(c, actor)
        try c.startProplet("pb", memory: "1G")
        let id = try c.cli(["actor", "send", actor, "go"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        var first: [String: Any] = [:]
        try c.waitUntil("execution running", timeout: 30) {
            first = try json(c, ["actor", "executions", actor, id])
            return first["status"] as? String == "running"
        }
        let victim = try #require(first["proplet_id"] as? String)
        c.crashProplet(victim)
        var done: [String: Any] = [:]
        try c.waitUntil("execution complete after a re-run", timeout: 60) {
            done = try json(c, ["actor", "executions", actor, id])
            return done["status"] as? String == "complete"
        }
        #expect(done["attempt"] as? Int == 2)
        #expect(done["proplet_id"] as? String != victim)
        #expect(try c.cli(["actor", "results", actor, id]).stdoutText.hasPrefix("done on"))
        // The crashed proplet comes back and cleans up what its predecessor left.
        let cleaned = try c.restartCrashedProplet(victim, memory: "1G")
        #expect(cleaned.count == 1, "\(cleaned)")
        #expect(cleaned.allSatisfy { $0.contains("cgroup_removed=true") }, "\(cleaned)")
    }

    /// A message sent to a worker whose proplet is paused (SIGSTOP keeps its broker connection)
    /// waits in the proplet's broker session. The manager gives the proplet up, so the message
    /// must run elsewhere; when the proplet resumes, the queued run is older than its placement
    /// epoch and is dropped, the worker the manager forgot is retired, and the message runs once,
    /// as its second attempt, on a new worker.
    @Test func aRunQueuedForAPausedPropletThatWasGivenUpNeverRuns() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "1G")
        let actor = try createActor(c, "once", ["--memory", "64M"],
                                    command: ["/bin/sh", "-c", #"printf 'on %s' "$PROPELLER_WORKER_ID" > "$PROPELLER_RESULTS""#])
        try waitReady(c, actor)
        let before = try json(c, ["actor", "workers", actor])["workers"] as? [[String: Any]] ?? []
        let oldWorker = try #require(before.first?["id"] as? String)
        guard let pid = c.proplets["p"]?.pid else { Issue.record("no proplet process"); return }
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        let id = try c.cli(["actor", "send", actor, "go"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        try c.waitUntil("the worker lost with its proplet", timeout: 30) {
            let e = try json(c, ["actor", "executions", actor, id])
            return e["attempt"] as? Int == 2 && e["status"] as? String == "submitted"
        }
        kill(pid, SIGCONT)
        var done: [String: Any] = [:]
        try c.waitUntil("the message ran on a new worker", timeout: 60) {
            done = try json(c, ["actor", "executions", actor, id])
            return done["status"] as? String == "complete"
        }
        #expect(done["attempt"] as? Int == 2)
        #expect(done["worker_id"] as? String != oldWorker)
        #expect(try c.cli(["actor", "results", actor, id]).stdoutText == "on \(done["worker_id"] as? String ?? "?")")
        let log = c.proplets["p"]?.log ?? ""
        #expect(log.contains("dropped an execution run the manager withdrew"), "the withdrawn run was not dropped")
        try c.waitUntil("the worker the manager forgot retired", timeout: 30) {
            (c.proplets["p"]?.log ?? "").split(separator: "\n").contains { $0.contains("worker retired") && $0.contains(oldWorker) }
        }
    }

    @Test func aManagerRestartLosesNoQueuedMessage() throws {
        let c = try Cluster()
        // No proplet yet: messages wait in the inbox.
        let actor = try createActor(c, "later", ["--memory", "64M"], command: Self.echo)
        var ids: [String] = []
        for i in 0..<5 { ids.append(try c.cli(["actor", "send", actor, "q\(i)"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(try curl(c, "GET", "/actors/\(actor)/messages").contains("\"messages\":5"))
        c.stopManager()
        try c.startManager()
        #expect(try curl(c, "GET", "/actors/\(actor)/messages").contains("\"messages\":5"))
        try c.startProplet("pa", memory: "1G")
        try c.waitUntil("5 executions complete", timeout: 60) {
            try executions(c, actor).filter { $0["status"] as? String == "complete" }.count == 5
        }
        for (i, id) in ids.enumerated() {
            #expect(try c.cli(["actor", "results", actor, id]).stdoutText == "out-q\(i)")
        }
    }

    /// A request straight to the API (for routes the CLI does not wrap).
    func curl(_ c: Cluster, _ method: String, _ path: String) throws -> String {
        let r = try runProcess("/usr/bin/curl", ["-s", "-X", method, "-H", "Authorization: Bearer \(c.token)", c.managerURL + path])
        return String(decoding: r.stdout, as: UTF8.self)
    }
}
