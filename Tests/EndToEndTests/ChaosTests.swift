import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// The chaos suite: a whole deployment of real processes (mosquitto, registry, manager, proxy,
/// three proplets) runs a workload of tasks with known outputs and exit codes, some with a
/// restart policy, and actor messages, while faults hit it at moments drawn from a seed: SIGKILL
/// and restart of the manager, a proplet, the proxy and the broker, a SIGTERM restart of the
/// broker and of a proplet (it drains first), SIGSTOP of a proplet for less and for more than the disconnect grace, the manager's
/// store on a full filesystem. A second run is README's recipe: three managers on PostgreSQL and a
/// three-node NATS cluster, where the faults also stall the leader, freeze its database sessions,
/// crash the database and kill a NATS node. Then everything heals and the results are checked against each
/// proplet's own journal of what it ran (``AttemptJournal``).
///
/// `scripts/chaos SEED [SECONDS]` runs it alone (`PROPELLER_CHAOS_SEED`,
/// `PROPELLER_CHAOS_SECONDS`); `scripts/test` runs a short one with a fresh seed. A failing seed
/// replays the same schedule (the timing of the machine still varies).
@Suite("Chaos: faults lose nothing", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"))
struct ChaosTests {
    enum Kind: String, CaseIterable { case ok, fail, retry }

    enum Fault: String, CaseIterable {
        case killManager = "SIGKILL the manager"
        case killProplet = "SIGKILL a proplet"
        case restartProplet = "SIGTERM a proplet, restart"
        case killProxy = "SIGKILL the proxy"
        case killBroker = "SIGKILL the broker"
        case restartBroker = "SIGTERM the broker, restart"
        case pauseShort = "SIGSTOP a proplet < grace"
        case pauseLong = "SIGSTOP a proplet > grace"
        case fullStore = "the manager's store full"
        case drainProplet = "drain a proplet (deadline 1-3 s), reopen"
        // With several managers on PostgreSQL:
        case freezeLeader = "SIGSTOP the leading manager"
        case cutLeader = "freeze the leader's DB sessions"
        case crashDatabase = "SIGKILL PostgreSQL, restart"
        case killNode = "SIGKILL a NATS node, restart"

        /// The faults of a topology: one manager's store can fill up and its broker (mosquitto)
        /// die; several managers' leader can stall or lose the database, the database can crash
        /// and a node of their NATS cluster die.
        static func of(_ topology: Topology) -> [Fault] {
            switch topology {
            case .oneManager: [.killManager, .killProplet, .restartProplet, .killProxy, .killBroker, .restartBroker, .pauseShort, .pauseLong, .fullStore,
                               .drainProplet]
            case .threeManagers: [.killManager, .killProplet, .restartProplet, .killProxy, .killNode, .pauseShort, .pauseLong,
                                  .freezeLeader, .cutLeader, .crashDatabase, .drainProplet]
            }
        }
    }

    enum Topology: String, CaseIterable, CustomTestStringConvertible {
        case oneManager = "one manager on SQLite"
        case threeManagers = "three managers on PostgreSQL and NATS"
        var testDescription: String { rawValue }
    }

    /// The manager that leads now (by its own /health), among those not down.
    func leader(_ c: Cluster, among alive: [Int]) -> Int? {
        alive.first { httpGet(port: c.managerPorts[$0], "/health")?.contains("\"role\":\"leader\"") == true }
    }

    @Test(arguments: Topology.allCases)
    func aWorkloadUnderFaultsLosesNothing(_ topology: Topology) throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["PROPELLER_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970)
        let seconds = env["PROPELLER_CHAOS_SECONDS"].flatMap(Double.init) ?? 45
        print("chaos: seed \(seed), \(Int(seconds)) s of faults, \(topology.rawValue) (replay: scripts/chaos \(seed) \(Int(seconds)))")
        var rng = SplitMix(seed: seed)
        func chance(_ p: Double) -> Bool { Double(rng.next() % 1_000_000) / 1_000_000 < p }
        func between(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.next() % 1_000_000) / 1_000_000 }

        let postgres = topology == .threeManagers ? try PostgresServer() : nil
        let nats = topology == .threeManagers ? try NATSCluster() : nil
        let c = topology == .threeManagers ? try Cluster(interval: "1s", store: postgres?.url(), managers: 3, nats: nats)
                                           : try Cluster(interval: "1s", managerStoreSize: "64m")
        let faults = Fault.of(topology)
        // The workload and the heals share one loop: a CLI call must not wait out an election.
        c.cliEnvironment["PROPELLER_ELECTION_WAIT"] = "1"
        var managersDown: Set<Int> = []  // killed or frozen: the CLI talks to another one
        func useAliveManager() {
            if let alive = c.managerPorts.indices.first(where: { !managersDown.contains($0) }) { c.defaultManager = alive }
        }
        let proplets = ["c1", "c2", "c3"]
        for p in proplets { try c.startProplet(p, memory: "2G", maxTasks: 6) }
        let actorCreated = try c.cli(["actor", "create", "chaos-echo", "--image", c.image, "--memory", "64M", "--",
                                      "sh", "-c", #"printf 'echo %s' "$MSG" > "$PROPELLER_RESULTS""#])
        let actor = actorCreated.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(actorCreated.status == 0, "\(actorCreated.stderrText)")

        // The workload and the faults, interleaved; each fault heals after its own time.
        var injected: [Fault: Int] = [:]
        var heals: [(at: Date, what: String, action: () throws -> Void)] = []
        var busy: Set<String> = []  // components with a fault in progress
        var submitted = 0
        var refused = 0
        var created: [String] = []
        var stoppedByUs: Set<String> = []
        var messages = 0
        /// Opens a drained proplet again; while no manager answers (one may be down, its restart a
        /// heal of its own), tries again a second later instead of holding up the other heals.
        func reopen(_ proplet: String, since: Date) throws {
            if try c.cli(["proplet", "drain", proplet, "--cancel"]).status == 0 { return }
            let open = try c.cli(["proplet", "eligibility", proplet, "on"])
            if open.status == 0 { return }
            guard Date().timeIntervalSince(since) < 120 else {
                Issue.record("proplet \(proplet) could not be opened again for 120 s: \(open.stderrText)")
                return
            }
            heals.append((Date().addingTimeInterval(1), "reopen \(proplet)", { try reopen(proplet, since: since) }))
        }
        let end = Date().addingTimeInterval(seconds)
        var nextFault = Date().addingTimeInterval(between(2, 5))
        var n = 0
        while Date() < end || !heals.isEmpty {
            let now = Date()
            for heal in heals where heal.at <= now {
                try heal.action()
                busy.remove(heal.what)
            }
            heals.removeAll { $0.at <= now }
            if now < end {
                // Work: a task now and then, an actor message sometimes.
                if chance(0.6) {
                    n += 1
                    let kind = Kind.allCases[Int(rng.next() % 3)]
                    let sleep = String(format: "%.1f", between(0.2, 3))
                    let name = "chaos-\(n)-\(kind.rawValue)"
                    let script = "sleep \(sleep); echo out-\(n)" + (kind == .ok ? "" : "; exit 3")
                    let flags = kind == .retry ? ["--restart", "on-failure", "--max-attempts", "2"] : []
                    let r = try c.cli(["task", "create", name, "--image", c.image, "--start", "--memory", "32M"] + flags + ["--", "sh", "-c", script])
                    if r.status == 0 {
                        submitted += 1
                        created.append(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))
                    } else {
                        refused += 1
                    }
                }
                // Now and then a stop of a recent task, wherever it is by then.
                if chance(0.06), let id = created.suffix(5).randomElement(using: &rng) {
                    if try c.cli(["task", "stop", id, "--grace", "0"]).status == 0 { stoppedByUs.insert(id) }
                }
                if chance(0.15) {
                    let sent = try c.cli(["actor", "send", actor, "m\(messages + 1)"])
                    if sent.status == 0 { messages += 1 }
                }
                // A fault, when it is time and its component is not already down.
                if now >= nextFault {
                    nextFault = now.addingTimeInterval(between(2, 6))
                    let fault = faults[Int(rng.next() % UInt64(faults.count))]
                    let proplet = proplets[Int(rng.next() % UInt64(proplets.count))]
                    let component: String
                    switch fault {
                    case .killManager, .fullStore, .freezeLeader: component = "manager"
                    case .cutLeader, .crashDatabase: component = "database"
                    case .killProxy: component = "proxy"
                    case .killBroker, .restartBroker, .killNode: component = "broker"
                    case .killProplet, .restartProplet, .pauseShort, .pauseLong, .drainProplet: component = proplet
                    }
                    if !busy.contains(component) {
                        busy.insert(component)
                        injected[fault, default: 0] += 1
                        print("chaos: \(String(format: "%6.1f", seconds - end.timeIntervalSince(now))) s: \(fault.rawValue)\(component == proplet ? " (\(proplet))" : "")")
                        let down = between(0.5, 3)
                        switch fault {
                        case .killManager:
                            let i = topology == .oneManager ? 0 : leader(c, among: c.managerPorts.indices.filter { !managersDown.contains($0) }) ?? 0
                            c.crashManager(i)
                            managersDown.insert(i)
                            useAliveManager()
                            heals.append((now.addingTimeInterval(down), component, {
                                try c.startManager(i)
                                managersDown.remove(i)
                            }))
                        case .freezeLeader:
                            // It loses its lease while it cannot run; thawed, it must not act on it.
                            guard let i = leader(c, among: [0, 1, 2]), let pid = c.managers[i]?.pid else { break }
                            kill(pid, SIGSTOP)
                            managersDown.insert(i)
                            useAliveManager()
                            heals.append((now.addingTimeInterval(between(1, 5)), component, {
                                kill(pid, SIGCONT)
                                managersDown.remove(i)
                            }))
                        case .cutLeader:
                            guard let postgres, let i = leader(c, among: [0, 1, 2]) else { break }
                            let sessions = try postgres.sessions(of: "propeller-manager-m\(i)")
                            for pid in sessions { kill(pid, SIGSTOP) }
                            heals.append((now.addingTimeInterval(between(2, 5)), component, { for pid in sessions { kill(pid, SIGCONT) } }))
                        case .crashDatabase:
                            guard let postgres else { break }
                            postgres.crash()
                            heals.append((now.addingTimeInterval(between(1, 3)), component, { try postgres.start() }))
                        case .killProplet:
                            c.crashProplet(proplet)
                            // Not waiting for the manager to list it: the manager may be down too.
                            heals.append((now.addingTimeInterval(down), component, { try c.startProplet(proplet, memory: "2G", maxTasks: 6, waitUntilAlive: false) }))
                        case .restartProplet:
                            // An operator's restart: it drains (its tasks finish, nothing new is
                            // placed there), says goodbye and comes back with the same data.
                            guard let old = c.proplets[proplet] else { break }
                            kill(old.pid, SIGTERM)
                            heals.append((now.addingTimeInterval(down), component, {
                                old.stop(grace: .seconds(40))  // waits for the drain to end
                                try c.startProplet(proplet, memory: "2G", maxTasks: 6, waitUntilAlive: false)
                            }))
                        case .killProxy:
                            c.crashProxy()
                            heals.append((now.addingTimeInterval(down), component, { try c.startProxy() }))
                        case .killBroker:
                            c.broker.crash()
                            heals.append((now.addingTimeInterval(down), component, { try c.broker.start() }))
                        case .restartBroker:
                            c.broker.stop()
                            heals.append((now.addingTimeInterval(2), component, { try c.broker.start() }))
                        case .killNode:
                            // One node at a time: the other two keep JetStream's quorum.
                            guard let nats else { break }
                            let node = Int(rng.next() % 3)
                            nats.kill(node)
                            heals.append((now.addingTimeInterval(down), component, { try nats.start(node) }))
                        case .pauseShort, .pauseLong:
                            guard let pid = c.proplets[proplet]?.pid else { break }
                            kill(pid, SIGSTOP)
                            // The grace is 3 s after 3 s of silence: short stays under both, long goes past.
                            let pause = fault == .pauseShort ? between(1, 2.5) : between(8, 10)
                            heals.append((now.addingTimeInterval(pause), component, { kill(pid, SIGCONT) }))
                        case .drainProplet:
                            // An operator's drain with a short deadline (refused while no manager
                            // answers), and later the proplet opened again, however the drain went.
                            _ = try c.cli(["proplet", "drain", proplet, "--deadline", String(format: "%.0fs", between(1, 3))])
                            heals.append((now.addingTimeInterval(between(3, 6)), component, { try reopen(proplet, since: Date()) }))
                        case .fullStore:
                            let filler = c.managerData + "/filler"
                            _ = try runProcess("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=64k"], timeout: 30)
                            heals.append((now.addingTimeInterval(between(2, 5)), component, { unlink(filler) }))
                        }
                    }
                }
            }
            usleep(UInt32(between(0.1, 0.4) * 1_000_000))
        }
        print("chaos: healed; \(submitted) tasks submitted (\(refused) refused while the manager was away), \(stoppedByUs.count) stopped, \(messages) messages")
        // Every fault has healed: a daemon that is not running exited on its own, a defect
        // however well the rest copes.
        var daemons = c.managers.enumerated().compactMap { i, m in m.map { ("manager \(i)", $0) } }
        daemons += c.proplets.sorted { $0.key < $1.key }.map { ("proplet \($0.key)", $0.value) }
        if let proxy = c.proxy { daemons.append(("the proxy", proxy)) }
        for (name, daemon) in daemons where !daemon.isRunning {
            let log = daemon.log
            let why = log.range(of: "Fatal error").map { String(log[$0.lowerBound...].prefix(3000)) } ?? String(log.suffix(3000))
            Issue.record("\(name) exited on its own during the run:\n\(why)")
        }

        // Everything settles: every task ends, every message has an execution that ended.
        /// Every task, page by page (a long run submits more than one page holds).
        func allTasks() throws -> [[String: Any]] {
            var all: [[String: Any]] = []
            while true {
                let r = try c.cli(["task", "list", "--json", "--limit", "1000", "--offset", String(all.count)])
                let page = (try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])?["tasks"] as? [[String: Any]] ?? []
                all += page
                if page.count < 1000 { return all }
            }
        }
        let finalStates: Set<String> = ["completed", "failed", "stopped"]
        var unsettled: [String] = []
        do {
            try c.waitUntil("every task to end", timeout: 180) {
                let tasks = try allTasks()
                unsettled = tasks.filter { !finalStates.contains($0["state"] as? String ?? "") }.map { "\($0["name"] ?? "?") \($0["state"] ?? "?")" }
                return !tasks.isEmpty && unsettled.isEmpty
            }
        } catch {
            Issue.record("tasks that never ended: \(unsettled)\n\(error)")
        }
        var executions: [[String: Any]] = []
        do {
            try c.waitUntil("every message to end", timeout: 120) {
                let r = try c.cli(["actor", "executions", actor, "--json", "--limit", "1000"])
                executions = (try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])?["executions"] as? [[String: Any]] ?? []
                return executions.allSatisfy { ["complete", "error"].contains($0["status"] as? String ?? "") }
            }
        } catch {
            Issue.record("executions that never ended: \(executions.filter { !["complete", "error"].contains($0["status"] as? String ?? "") }.count)")
        }

        // The checks, against what the proplets themselves recorded.
        var journals: [TaskAttempt: [(proplet: String, entry: JournalEntry)]] = [:]
        for p in proplets {
            for entry in readJournal(c.dir.path + "/proplet-\(p)/proplet/attempts.jsonl") {
                journals[TaskAttempt(taskId: entry.taskId, attempt: entry.attempt), default: []].append((p, entry))
            }
        }
        var violations: [String] = []
        var checked = 0
        var outcome: [String: Int] = [:]
        for summary in try allTasks() {
            guard let id = summary["id"] as? String, let name = summary["name"] as? String, name.hasPrefix("chaos-") else { continue }
            let parts = name.split(separator: "-")
            guard parts.count == 3, let kind = Kind(rawValue: String(parts[2])) else { continue }
            let t = try c.task(id)
            checked += 1
            let state = t["state"] as? String ?? "?"
            let attempt = t["attempt"] as? Int ?? 0
            let result = t["result"] as? [String: Any]
            let exitCode = result?["exit_code"] as? Int
            let reason = t["reason"] as? String ?? ""
            let history = (t["history"] as? [[String: Any]]) ?? []
            outcome["\(kind.rawValue) \(state)", default: 0] += 1
            // No attempt ran twice, and no more attempts than the policy allows.
            let maxAttempts = kind == .retry ? 2 : 1
            if attempt > maxAttempts { violations.append("\(name): \(attempt) attempts (policy allows \(maxAttempts))") }
            for a in 1...max(1, attempt) {
                let accepted = (journals[TaskAttempt(taskId: id, attempt: a)] ?? []).filter { $0.entry.event == "accepted" }
                if accepted.count > 1 { violations.append("\(name): attempt \(a) accepted \(accepted.count) times (\(accepted.map(\.proplet)))") }
                let ends = history.filter { ($0["attempt"] as? Int) == a && ($0["state"] as? String) == "completed" }
                if ends.count > 1 { violations.append("\(name): attempt \(a) completed \(ends.count) times in its history") }
            }
            // The final attempt's real outcome, where its proplet recorded one.
            let ended = (journals[TaskAttempt(taskId: id, attempt: attempt)] ?? []).first { $0.entry.event == "ended" }?.entry
            if let ended {
                if ended.state != state { violations.append("\(name): the manager says \(state) (\(reason)), its proplet says \(ended.state ?? "?")") }
                if let code = ended.exitCode, code != exitCode.map(Int32.init) ?? -1 { violations.append("\(name): exit code \(exitCode.map(String.init) ?? "-"), its proplet says \(code)") }
            }
            switch state {
            case "completed":
                if kind != .ok { violations.append("\(name): completed, but it exits 3") }
                if result?["stdout_tail"] as? String != "out-\(parts[1])\n" { violations.append("\(name): output \(String(describing: result?["stdout_tail"]))") }
            case "failed":
                // Failed by a fault: its container really died (its proplet recorded the end, and
                // the state matched above), or it never ran and the reason says why.
                if exitCode == 3 {
                    if kind == .ok { violations.append("\(name): failed with exit 3, but it exits 0") }
                    if result?["stdout_tail"] as? String != "out-\(parts[1])\n" { violations.append("\(name): output \(String(describing: result?["stdout_tail"]))") }
                } else if ended == nil && reason.isEmpty {
                    violations.append("\(name): failed without its exit code, a recorded end or a reason")
                } else if ended?.exitCode == 3 {
                    violations.append("\(name): failed as \(reason), its proplet says it exited 3")
                }
            case "stopped":
                // By us, or by a drain's deadline (its last attempt, stopped where it ran).
                let drained = history.contains { ($0["reason"] as? String)?.contains("drain deadline passed") == true }
                if !stoppedByUs.contains(id) && !drained { violations.append("\(name): stopped, though nobody stopped it: \(reason)") }
            default:
                let journaled = (journals[TaskAttempt(taskId: id, attempt: attempt)] ?? []).map { "\($0.proplet) \($0.entry.event)" }
                violations.append("\(name): still \(state) on \(t["assigned_proplet"] ?? "-") in phase \(t["phase"] ?? "-") (\(reason)); journal: \(journaled); history: "
                                  + history.map { "\($0["state"] ?? "?")/\($0["attempt"] ?? "?") \($0["reason"] ?? "")" }.joined(separator: ", "))
                if let p = t["assigned_proplet"] as? String, let log = c.proplets[p]?.log {
                    print("chaos: the log of \(p) about \(name):\n" + log.split(separator: "\n").filter { $0.contains(id) }.suffix(30).joined(separator: "\n"))
                }
            }
        }
        for e in executions where (e["status"] as? String) == "error" && ((e["error"] as? String) ?? "").isEmpty {
            violations.append("execution \(e["id"] ?? "?") failed without a reason")
        }
        let completeMessages = Set(executions.filter { ($0["status"] as? String) == "complete" }.compactMap { $0["message_id"] as? String ?? $0["id"] as? String })
        if executions.count < messages { violations.append("\(messages) messages sent, \(executions.count) executions") }

        // Nothing left behind once the deployment stops: no cgroup or mount of ours.
        c.stopAll()
        let mounts = (readFile("/proc/self/mountinfo") ?? "").split(separator: "\n").filter { $0.contains(c.dir.path) && !$0.contains(c.managerData + " ") }
        if !mounts.isEmpty { violations.append("mounts left: \(mounts.prefix(3))") }
        let ours = Set(journals.values.flatMap { $0.compactMap(\.entry.container) })
        let leftovers = leftoverCgroups().filter { ours.contains(($0 as NSString).lastPathComponent) }
        if !leftovers.isEmpty { violations.append("cgroups left: \(leftovers.prefix(3))") }

        print("chaos: faults injected:")
        for fault in faults { print("chaos:   \(fault.rawValue.padding(toLength: 34, withPad: " ", startingAt: 0)) \(injected[fault] ?? 0)") }
        print("chaos: outcomes (kind, final state): " + outcome.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("chaos: invariants: \(checked) tasks checked against \(journals.count) journaled attempts (\(ours.count) containers), \(executions.count) executions (\(completeMessages.count) complete): "
              + (violations.isEmpty ? "all held" : "\(violations.count) violated"))
        for v in violations { print("chaos: VIOLATED: \(v)") }
        #expect(violations.isEmpty, "seed \(seed), \(topology.rawValue): \(violations)")
        #expect(checked > 0, "no task was checked")
    }

    struct JournalEntry: Decodable {
        var event: String
        var taskId: String
        var attempt: Int
        var container: String?
        var state: String?
        var exitCode: Int32?
    }

    func readJournal(_ path: String) -> [JournalEntry] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(JournalEntry.self, from: Data($0)) }
    }

    /// Container cgroups (named by a 64-hex container id) under this process's cgroup.
    func leftoverCgroups() -> [String] {
        var found: [String] = []
        for line in (readFile("/proc/self/cgroup") ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2).map(String.init)
            guard fields.count == 3 else { continue }
            let root = fields[1].isEmpty ? "/sys/fs/cgroup" + (FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified") ? "/unified" : "")
                                         : "/sys/fs/cgroup/" + (fields[1].split(separator: ",").first.map(String.init) ?? "")
            let base = root + fields[2]
            guard let walker = FileManager.default.enumerator(atPath: base) else { continue }
            for case let path as String in walker {
                let name = (path as NSString).lastPathComponent
                if name.count == 64, name.allSatisfy(\.isHexDigit) { found.append(base + "/" + path) }
            }
        }
        return found
    }
}
