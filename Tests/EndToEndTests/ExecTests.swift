import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// `propeller task exec` through the real binaries: the CLI, the manager, the broker and the
/// proplet, into a running task's container.
@Suite("Exec into running tasks", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"))
struct TaskExecTests {
    func json(_ text: String) throws -> [String: Any] {
        let line = try #require(text.split(separator: "\n").last.map(String.init))
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func execSeesTheTaskAndHoldsNoMoreThanIt() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("p", memory: "2G", extra: ["--image-source", "direct"])
        let task = try c.create("sleeper", ["--user", "app", "--env", "GREETING=hello"], command: ["probe", "sleep", "300"])
        try c.waitFor(task, state: "running")

        // Lists in every format (-o): the wide table has more columns, YAML is the API's answer.
        let wide = try c.cli(["task", "list", "-o", "wide"])
        #expect(wide.status == 0 && wide.stdoutText.contains("IMAGE") && wide.stdoutText.contains(c.image), "\(wide.stdoutText)")
        #expect(!(try c.cli(["task", "list"]).stdoutText.contains("IMAGE")))
        let yaml = try c.cli(["task", "list", "-o", "yaml"])
        let parsed = try runProcess("/usr/bin/python3", ["-c", "import sys, yaml; print(yaml.safe_load(sys.stdin)['tasks'][0]['id'])"], stdin: yaml.stdout)
        #expect(String(decoding: parsed.stdout, as: UTF8.self) == task + "\n", "\(yaml.stdoutText)")
        #expect(try c.cli(["proplet", "list", "-o", "json"]).stdoutText.contains("\"proplets\""))
        #expect(try c.cli(["task", "list", "-o", "xml"]).status != 0)

        // Its pid namespace: PID 1 is the task's command; its own pid is another.
        let cmdline = try c.cli(["task", "exec", task, "--", "cat", "/proc/1/cmdline"])
        #expect(cmdline.status == 0, "\(cmdline.stderrText)")
        #expect(cmdline.stdoutText.split(separator: "\0").map(String.init) == ["probe", "sleep", "300"])

        // The task's user and so its capabilities (none effective), its seccomp filter,
        // no_new_privs and environment: never root, although the proplet that starts it is.
        let probe = try c.cli(["task", "exec", task, "--", "probe"])
        #expect(probe.status == 0, "\(probe.stderrText)")
        let p = try json(probe.stdoutText)
        #expect(p["pid"] as? Int ?? 1 > 1)
        #expect(p["ppid"] as? Int == 0)
        #expect(p["uid"] as? Int == 1000)
        #expect(p["CapEff"] as? String == "0000000000000000")
        #expect(p["CapPrm"] as? String == "0000000000000000")
        #expect(p["CapBnd"] as? String == "00000000a80405fb")
        #expect(p["Seccomp"] as? String == "2")
        #expect(p["NoNewPrivs"] as? String == "1")
        let env = try c.cli(["task", "exec", task, "-e", "EXTRA=1", "-w", "/tmp", "--", "sh", "-c", "echo $GREETING $EXTRA; pwd; echo oops >&2"])
        #expect(env.stdoutText == "hello 1\n/tmp\n")
        #expect(env.stderrText == "oops\n")

        // Exit codes are the CLI's; a missing command is 127 with the reason.
        #expect(try c.cli(["task", "exec", task, "--", "sh", "-c", "exit 3"]).status == 3)
        let missing = try c.cli(["task", "exec", task, "--", "no-such-command"])
        #expect(missing.status == 127)
        #expect(missing.stderrText.contains("no-such-command") && missing.stderrText.contains("not found"), "\(missing.stderrText)")

        // stdin with -i, its end closing the process's stdin.
        let environment = ["PROPELLER_MANAGER_URL": "http://127.0.0.1:\(c.managerPorts[0])", "PROPELLER_API_TOKEN": c.token]
        let piped = try propeller(["task", "exec", "-i", task, "--", "sh", "-c", "cat; echo done"], stdin: Data("line one\nline two\n".utf8),
                                  environment: environment)
        #expect(piped.status == 0, "\(piped.stderrText)")
        #expect(piped.stdoutText == "line one\nline two\ndone\n")
        // Output larger than one message arrives whole and in order.
        let big = try c.cli(["task", "exec", task, "--", "sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done"])
        let lines = big.stdoutText.split(separator: "\n")
        #expect(lines.count == 20000 && lines.first == "line-0" && lines.last == "line-19999")
        #expect(zip(lines, lines.dropFirst()).allSatisfy { a, b in Int(b.dropFirst(5)) == Int(a.dropFirst(5)).map { $0 + 1 } })

        // -t: a terminal (24 × 80 when this side has none), output with its line endings.
        let tty = try c.cli(["task", "exec", "-t", task, "--", "sh", "-c", "[ -t 0 ] && echo tty; stty size"])
        #expect(tty.status == 0, "\(tty.stderrText)")
        #expect(tty.stdoutText == "tty\r\n24 80\r\n")

        // -it on a real terminal: keys go through raw, the shell's exit code comes back.
        let (status, shown) = try runOnTerminal(propellerBinary, ["task", "exec", "-it", task, "--", "sh"],
                                                keys: [(1.5, "echo answer-$((6*7))\r"), (0.5, "exit 5\r")],
                                                environment: ProcessInfo.processInfo.environment.merging(environment) { _, b in b }, timeout: 30)
        #expect(status == 5, "\(shown)")
        #expect(shown.contains("answer-42"), "\(shown)")

        // A session outlives nothing: the task's end ends it.
        let session = try c.cli(["task", "exec", task, "--", "sleep", "300"], whileRunning: { _ in
            usleep(1_000_000)
            _ = try? c.cli(["task", "stop", task, "--grace", "0"])
        })
        #expect(session.status == 137, "killed with the task's pid namespace: \(session.stderrText)")
        try c.waitForEnd(task)
        let refused = try c.cli(["task", "exec", task, "--", "true"])
        #expect(refused.status != 0 && refused.stderrText.contains("running task"), "\(refused.stderrText)")
        #expect(try c.cli(["task", "exec", "no-such-task", "--", "true"]).status != 0)
    }
}
