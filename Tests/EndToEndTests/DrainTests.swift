import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Draining a proplet before maintenance, and eligibility, as an operator does it: real broker,
/// registry, manager and proplets, driven by the CLI.
@Suite("Drain and eligibility", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"))
struct DrainTests {
    func json(_ c: Cluster, _ args: [String]) throws -> [String: Any] {
        let r = try c.cli(args + ["--json"])
        guard r.status == 0, let object = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else {
            throw PropellerError(.internalError, "\(args.joined(separator: " ")) failed: \(r.stderrText)")
        }
        return object
    }

    /// A drain keeps new work off the proplet, moves its actor worker at once, lets a short task
    /// finish there and, at the deadline, stops the long one, which its restart policy runs again
    /// on the other proplet; the proplet then stays ineligible until it is opened again.
    @Test func aDrainMovesWorkAndKeepsNewWorkOff() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("old", memory: "4G", extra: ["--image-source", "direct"])
        let short = try c.create("short", command: ["sh", "-c", "sleep 4; echo finished where it began"])
        let long = try c.create("long", ["--restart", "on-failure", "--max-attempts", "2"], command: ["sh", "-c", "echo attempt; sleep 300"])
        try c.waitFor(short, state: "running")
        try c.waitFor(long, state: "running")
        let actor = try c.cli(["actor", "create", "echo", "--image", c.image, "--memory", "64M", "--", "/bin/sh", "-c", #"printf 'on %s' "$PROPELLER_WORKER_ID" > "$PROPELLER_RESULTS""#])
        #expect(actor.status == 0, "\(actor.stderrText)")
        let actorID = actor.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        try c.waitUntil("the actor's worker on old", timeout: 60) {
            (try json(c, ["actor", "workers", actorID])["workers"] as? [[String: Any]] ?? []).contains { $0["proplet_id"] as? String == "old" && $0["status"] as? String == "ready" }
        }
        try c.startProplet("new", memory: "4G", extra: ["--image-source", "direct"])

        let drain = try c.cli(["proplet", "drain", "old", "--deadline", "8s"])
        #expect(drain.status == 0, "\(drain.stderrText)")
        #expect(drain.stdoutText.contains("draining"), "\(drain.stdoutText)")
        let list = try c.cli(["proplet", "list"])
        #expect(list.stdoutText.contains("ineligible") && list.stdoutText.contains("deadline in"), "\(list.stdoutText)")

        // New work goes elsewhere.
        let fresh = try c.create("fresh", command: ["echo", "fresh"])
        let done = try c.waitFor(fresh, state: "completed")
        #expect(done["assigned_proplet"] as? String == "new")
        // The worker moved: the old one retires, a new one is ready on the other proplet.
        try c.waitUntil("the worker moved to new", timeout: 60) {
            let workers = try json(c, ["actor", "workers", actorID])["workers"] as? [[String: Any]] ?? []
            return workers.count == 1 && workers[0]["proplet_id"] as? String == "new" && workers[0]["status"] as? String == "ready"
        }
        let sent = try c.cli(["actor", "send", actorID, "hi", "--sync"])
        #expect(sent.stdoutText.contains("on "), "\(sent.stdoutText) \(sent.stderrText)")
        // The short task finishes where it began.
        let shortDone = try c.waitFor(short, state: "completed", timeout: 20)
        #expect(shortDone["assigned_proplet"] as? String == "old")
        // At the deadline the long one is stopped there and runs again on the other proplet.
        try c.waitUntil("the long task's second attempt on new", timeout: 40) {
            let t = try c.task(long)
            return t["attempt"] as? Int == 2 && t["assigned_proplet"] as? String == "new" && t["state"] as? String == "running"
        }
        let history = try c.cli(["task", "get", long])
        #expect(history.stdoutText.contains("drain deadline passed"), "\(history.stdoutText)")
        // The drain is complete; the proplet stays closed until opened.
        try c.waitUntil("the drain complete", timeout: 15) { try c.proplet("old")?["drain"] == nil }
        #expect(try c.proplet("old")?["eligible"] as? Bool == false)
        // Nothing of the old attempt runs there any more.
        try c.waitUntil("old runs nothing", timeout: 20) { try c.proplet("old")?["task_count"] as? Int == 0 }

        let pinned = try c.create("pinned", ["--proplet", "old"], command: ["echo", "back"])
        let waiting = try c.task(pinned)
        #expect(waiting["state"] as? String == "pending", "\(waiting)")
        let open = try c.cli(["proplet", "eligibility", "old", "on"])
        #expect(open.status == 0 && open.stdoutText.contains("eligible"), "\(open.stdoutText) \(open.stderrText)")
        try c.waitFor(pinned, state: "completed")

        // The refusals: a bad setting, a drain of nothing, a cancel without a drain.
        #expect(try c.cli(["proplet", "eligibility", "old", "maybe"]).status != 0)
        let unknown = try c.cli(["proplet", "drain", "nope"])
        #expect(unknown.status != 0 && unknown.stderrText.contains("no proplet nope"), "\(unknown.stderrText)")
        let notDraining = try c.cli(["proplet", "drain", "old", "--cancel"])
        #expect(notDraining.status != 0 && notDraining.stderrText.contains("not draining"), "\(notDraining.stderrText)")
        _ = try c.cli(["task", "stop", long, "--grace", "0"])
        try c.waitForEnd(long)
    }
}
