import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Live usage of running tasks, sampled by proplets from their cgroups: real broker, registry,
/// manager and proplet, read through the CLI and the API.
@Suite("Live usage", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"))
struct StatsTests {
    func samples(_ c: Cluster, _ args: [String]) throws -> [[String: Any]] {
        let r = try c.cli(args + ["--json"])
        guard r.status == 0, let object = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else {
            throw PropellerError(.internalError, "\(args.joined(separator: " ")) failed: \(r.stderrText)")
        }
        return object["samples"] as? [[String: Any]] ?? []
    }

    /// A task that burns a CPU shows about one CPU; one that fills memory shows it growing; the
    /// proplet's aggregate holds both; the human form and `--follow` print lines as they come.
    @Test func aBusyTaskShowsAboutOneCPUAndAMemoryHogItsGrowth() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("p", memory: "4G", extra: ["--image-source", "direct", "--stats-interval", "500ms"])
        let burner = try c.create("burner", ["--cpus", "2"], command: ["sh", "-c", "while :; do :; done"])
        // 2 MiB more of /dev/shm (a tmpfs, charged to the task's memory) every 0.3 s.
        let hog = try c.create("hog", ["--memory", "256M"],
                               command: ["sh", "-c", "i=0; while [ $i -lt 25 ]; do dd if=/dev/zero of=/dev/shm/f$i bs=1M count=2 2>/dev/null; i=$((i+1)); sleep 0.3; done; sleep 300"])
        try c.waitFor(burner, state: "running")
        try c.waitFor(hog, state: "running")

        var burning: [[String: Any]] = []
        try c.waitUntil("a few samples of the burner", timeout: 30) {
            burning = try samples(c, ["task", "stats", burner])
            return burning.filter { $0["cpu_cores"] != nil }.count >= 4
        }
        let cores = burning.compactMap { $0["cpu_cores"] as? Double }.suffix(3)
        let mean = cores.reduce(0, +) / Double(cores.count)
        #expect(mean > 0.7 && mean < 1.3, "one busy shell uses about one CPU: \(cores)")
        #expect(burning.last?["pids"] as? Int ?? 0 >= 1)

        var growth: [[String: Any]] = []
        try c.waitUntil("the hog's memory to grow", timeout: 40) {
            growth = try samples(c, ["task", "stats", hog])
            let memory = growth.compactMap { $0["memory_bytes"] as? Int }
            return memory.count >= 3 && (memory.last ?? 0) - (memory.first ?? 0) >= 20 << 20
        }
        let memory = growth.compactMap { $0["memory_bytes"] as? Int }
        #expect(zip(memory, memory.dropFirst()).allSatisfy { $1 >= $0 - (1 << 20) }, "it only grows: \(memory)")

        let proplet = try samples(c, ["proplet", "stats", "p"])
        #expect((proplet.last?["cpu_cores"] as? Double ?? 0) > 0.5, "\(proplet.suffix(2))")
        #expect((proplet.last?["memory_bytes"] as? Int ?? 0) >= memory.last ?? Int.max, "the aggregate holds the hog's memory")

        let human = try c.cli(["task", "stats", burner])
        #expect(human.status == 0 && human.stdoutText.contains("CPU") && human.stdoutText.contains("MEMORY"), "\(human.stdoutText)")

        // --follow: new lines while it runs, and the end when the task stops.
        let environment = ProcessInfo.processInfo.environment.merging(["PROPELLER_MANAGER_URL": "http://127.0.0.1:\(c.managerPorts[0])",
                                                                        "PROPELLER_API_TOKEN": c.token]) { _, b in b }
        let followed = try runProcess(propellerBinary, ["task", "stats", burner, "--follow"], environment: environment, timeout: 30) { _ in
            usleep(2_500_000)
            _ = try? c.cli(["task", "stop", burner, "--grace", "0"])
        }
        let followedText = String(decoding: followed.stdout, as: UTF8.self)
        #expect(followed.status == 0 && !followed.timedOut, "\(String(decoding: followed.stderr, as: UTF8.self))")
        #expect(followedText.split(separator: "\n").count >= 3, "header and lines: \(followedText)")

        #expect(try c.cli(["task", "stats", "no-such-task"]).status != 0)
        _ = try c.cli(["task", "stop", hog, "--grace", "0"])
        try c.waitForEnd(hog)
    }
}
