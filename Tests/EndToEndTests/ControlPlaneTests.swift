import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

@Suite("Control plane: manager, proplets and CLI as real processes", .serialized,
       .enabled(if: isRoot, "requires root: proplets run containers (namespaces, cgroups, overlayfs)"))
struct ControlPlaneTests {
    @Test func aTaskLandsOnThePropletWithRoomAndItsOutputAndExitCodeComeBack() throws {
        let c = try Cluster()
        try c.startProplet("small", memory: "2G")
        try c.startProplet("big", memory: "4G")

        let ok = try c.cli(["task", "create", "hello", "--image", c.image, "--memory", "3G", "--wait"])
        #expect(ok.status == 0, "\(ok.stderrText)")
        #expect(ok.stdoutText == "hi from layer two in /home/app as app with hello\n")
        #expect(ok.stderrText.contains("running on big"))
        let list = try c.cli(["task", "list"])
        #expect(list.stdoutText.contains("hello") && list.stdoutText.contains("completed") && list.stdoutText.contains("big"))

        let failing = try c.cli(["task", "create", "fails", "--image", c.image, "--env", "CODE=3", "--wait", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit $CODE"])
        #expect(failing.status == 3)
        #expect(failing.stdoutText == "to-out\n")
        #expect(failing.stderrText.contains("to-err"))
        #expect(failing.stderrText.contains("exited with code 3"))

        let slow = try c.cli(["task", "create", "slow", "--image", c.image, "--timeout", "1s", "--wait", "--", "sleep", "30"])
        #expect(slow.status == 124)
        #expect(slow.stderrText.contains("timed out"))

        let tooBig = try c.cli(["task", "create", "huge", "--image", c.image, "--memory", "64G", "--wait"])
        #expect(tooBig.status == 125)
        #expect(tooBig.stderrText.contains("no proplet could ever hold the task"))

        let missing = try c.cli(["task", "create", "missing", "--image", "\(c.registry.address)/nope:v1", "--wait"])
        #expect(missing.status == 125)
        #expect(missing.stderrText.contains("pull"), "\(missing.stderrText)")
    }

    @Test func aFourthTaskWaitsPendingUntilOneFinishesAndStopKillsASleepingTask() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("a", memory: "4G", maxTasks: 2, extra: ["--image-source", "direct"])
        try c.startProplet("b", memory: "4G", maxTasks: 1, extra: ["--image-source", "direct"])
        let sleepers = try (0..<3).map { try c.create("sleeper\($0)", command: ["sleep", "300"]) }
        for id in sleepers { try c.waitFor(id, state: "running") }
        let fourth = try c.create("fourth", command: ["echo", "my turn"])
        let pending = try c.task(fourth)
        #expect(pending["state"] as? String == "pending")
        #expect((pending["reason"] as? String)?.contains("capacity") == true)

        let stop = try c.cli(["task", "stop", sleepers[0], "--grace", "1"])
        #expect(stop.status == 0)
        let stopped = try c.waitFor(sleepers[0], state: "stopped", timeout: 15)
        #expect(((stopped["result"] as? [String: Any])?["exit_code"] as? Int).map { $0 == 137 || $0 == 143 } == true)
        let done = try c.waitFor(fourth, state: "completed", timeout: 30)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "my turn\n")
        for id in sleepers.dropFirst() { _ = try c.cli(["task", "stop", id, "--grace", "0"]) }
        for id in sleepers.dropFirst() { try c.waitFor(id, state: "stopped", timeout: 15) }
    }

    @Test func aKilledPropletIsDeadAndItsTaskFailsOrIsRequeued() throws {
        let c = try Cluster()
        try c.startProplet("doomed", memory: "4G")
        let plain = try c.create("plain", command: ["sleep", "300"])
        let retried = try c.create("retried", ["--restart", "on-failure", "--max-attempts", "2"], command: ["sh", "-c", "sleep 300"])
        try c.waitFor(plain, state: "running")
        try c.waitFor(retried, state: "running")
        let killedAt = Date()
        c.crashProplet("doomed")
        let failed = try c.waitFor(plain, state: "failed", timeout: 10)
        #expect(Date().timeIntervalSince(killedAt) < 3 * 1.0 + 2)
        #expect((failed["reason"] as? String)?.contains("proplet lost") == true)
        #expect(try c.proplet("doomed")?["alive"] as? Bool == false)
        let requeued = try c.waitFor(retried, state: "pending", timeout: 10)
        #expect(requeued["attempt"] as? Int == 2)
        // Another proplet takes the second attempt.
        try c.startProplet("rescuer", memory: "4G")
        let placed = try c.waitFor(retried, state: "running", timeout: 20)
        #expect(placed["assigned_proplet"] as? String == "rescuer")
        _ = try c.cli(["task", "stop", retried, "--grace", "0"])
        try c.waitFor(retried, state: "stopped")
        // Back with the same data directory, the proplet removes the cgroups of the two
        // containers that died with it.
        let cleaned = try c.restartCrashedProplet("doomed", memory: "4G")
        #expect(cleaned.count == 2, "\(cleaned)")
        #expect(cleaned.allSatisfy { $0.contains("cgroup_removed=true") }, "\(cleaned)")
    }

    @Test func restartingTheManagerMidRunLosesNothing() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        let running = try c.create("survivor", command: ["sh", "-c", "sleep 2; echo finished while the manager was away"])
        try c.waitFor(running, state: "running")
        let pending = try c.create("queued", ["--memory", "3G", "--proplet", "p"])
        #expect(try c.task(pending)["state"] as? String == "pending" || (try c.task(pending)["state"] as? String) == "failed")
        c.stopManager()
        sleep(3)  // the task ends while no manager listens; its result waits in the proplet's outbox
        try c.startManager()
        let done = try c.waitFor(running, state: "completed", timeout: 20)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "finished while the manager was away\n")
        let history = (done["history"] as? [[String: Any]])?.compactMap { $0["state"] as? String } ?? []
        #expect(history.first == "created" && history.last == "completed")
        #expect(try c.task(pending)["state"] as? String != nil)
    }

    /// The operator's routine broker restart (SIGTERM, back 2 s later) while a task runs: on its
    /// way down mosquitto hands the proplet's Last Will to the manager, which once declared the
    /// proplet dead at once and failed the task ("proplet lost"), then threw away its real
    /// result. A dropped connection is a disconnect, not a death: the task completes.
    @Test func aBrokerRestartWhileATaskRunsEndsWithItsRealResult() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        let id = try c.create("through-a-restart", command: ["sh", "-c", "sleep 4; echo ok"])
        try c.waitFor(id, state: "running")
        c.broker.stop()
        sleep(2)
        try c.broker.start()
        let done = try c.waitFor(id, state: "completed", timeout: 30)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "ok\n")
        let history = (done["history"] as? [[String: Any]])?.compactMap { $0["state"] as? String } ?? []
        #expect(!history.contains("failed") && history.filter { $0 == "pending" }.count == 1 && done["attempt"] as? Int == 1, "\(history)")
        print("history through a broker restart: \(history)")
        #expect(try c.proplet("p")?["alive"] as? Bool == true)
    }

    /// A manager started while its broker is down (after a crash, during a broker restart, or
    /// booted first) waited up to 30 s for the broker before it served its API, and exited if the
    /// broker took longer (found by a 900 s chaos run). It serves at once now: tasks are taken
    /// and wait, and run once the broker and a proplet are there.
    @Test func theManagerServesItsAPIWhileTheBrokerIsDown() throws {
        let c = try Cluster()
        c.broker.stop()
        c.stopManager()
        try c.startManager()
        let id = try c.create("before-the-broker", command: ["echo", "waited"])
        #expect(try c.task(id)["state"] as? String == "pending")
        try c.broker.start()
        try c.startProplet("p", memory: "2G")
        let done = try c.waitFor(id, state: "completed", timeout: 30)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "waited\n")
    }

    /// A start queued for a proplet that then stops answering (SIGSTOP: its TCP connection
    /// stays) is delivered when it resumes, after the manager gave it up and failed the task. It
    /// once ran then (and the manager, seeing it run, took the task back). The start carries the
    /// epoch it was placed in; the proplet, back from a pause, holds starts until the manager
    /// confirms the current epoch, and drops the withdrawn one.
    @Test func aStartQueuedForAPausedPropletThatWasGivenUpNeverRuns() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        guard let pid = c.proplets["p"]?.pid else { Issue.record("no proplet process"); return }
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        let id = try c.create("withdrawn", command: ["sh", "-c", "echo it ran"])
        #expect(try c.task(id)["assigned_proplet"] as? String == "p")
        // 3 s of silence, then the 3 s grace: lost, and the task failed.
        let failed = try c.waitFor(id, state: "failed", timeout: 20)
        #expect((failed["reason"] as? String)?.contains("proplet lost") == true)
        kill(pid, SIGCONT)
        try c.waitUntil("p alive again", timeout: 15) { try c.proplet("p")?["alive"] as? Bool == true }
        sleep(3)
        let after = try c.task(id)
        #expect(after["state"] as? String == "failed", "the withdrawn start ran: \(after["state"] ?? "-"), \(after["reason"] ?? "-")")
        let journal = (try? String(contentsOfFile: c.dir.path + "/proplet-p/proplet/attempts.jsonl", encoding: .utf8)) ?? ""
        #expect(!journal.contains(id), "the proplet accepted the withdrawn start")
        #expect(c.proplets["p"]?.log.contains("dropped a start the manager withdrew") == true)
    }

    /// A proplet shutting down (SIGTERM: it lets its tasks finish, up to its drain timeout) says
    /// `draining` in its heartbeats. The manager once placed new tasks there anyway, and the
    /// proplet failed each at once ("shutting down"). Nothing new goes to a draining proplet: the
    /// task waits, and runs on the next proplet that comes.
    @Test func aDrainingPropletGetsNoNewTasks() throws {
        let c = try Cluster()
        try c.startProplet("old", memory: "2G")
        let finishing = try c.create("finishing", command: ["sh", "-c", "sleep 4; echo done"])
        try c.waitFor(finishing, state: "running")
        guard let pid = c.proplets["old"]?.pid else { Issue.record("no proplet process"); return }
        kill(pid, SIGTERM)
        usleep(1_500_000)  // its draining heartbeat goes out at once
        let later = try c.create("later", command: ["echo", "later"])
        usleep(1_000_000)
        let waiting = try c.task(later)
        #expect(waiting["state"] as? String == "pending", "\(waiting["state"] ?? "-"): \(waiting["reason"] ?? "-")")
        #expect(try c.proplet("old")?["draining"] as? Bool == true)
        let done = try c.waitFor(finishing, state: "completed", timeout: 20)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "done\n")
        try c.startProplet("new", memory: "2G")
        let ran = try c.waitFor(later, state: "completed", timeout: 30)
        #expect(ran["assigned_proplet"] as? String == "new")
    }

    @Test func logsFollowAndAGracefulPropletShutdownReportsItsTasks() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G", extra: ["--drain-timeout", "1s"])
        let id = try c.create("chatty", command: ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2"])
        let follow = try c.cli(["task", "logs", id, "--follow"])
        #expect(follow.status == 0)
        #expect(follow.stdoutText == "line 1\nline 2\nline 3\n")
        #expect(follow.stderrText == "oops\n")

        let long = try c.create("long", command: ["sleep", "300"])
        try c.waitFor(long, state: "running")
        c.stopProplet("p")  // SIGTERM: drain 1 s, stop the task, report, say goodbye
        let stopped = try c.waitFor(long, state: "stopped", timeout: 20)
        #expect(stopped["result"] != nil)
        // Its goodbye marks it dead (and no later heartbeat revives it).
        try c.waitUntil("proplet p dead", timeout: 5) { try c.proplet("p")?["alive"] as? Bool == false }
        sleep(2)
        #expect(try c.proplet("p")?["alive"] as? Bool == false)
    }
}
