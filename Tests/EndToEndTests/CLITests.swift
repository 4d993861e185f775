import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// The built `propeller` binary, next to the test bundle (or $PROPELLER_BIN).
let propellerBinary: String = {
    if let env = ProcessInfo.processInfo.environment["PROPELLER_BIN"] { return env }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("propeller").path
}()

let seccompCacheForTests: String = {
    let dir = NSTemporaryDirectory() + "/propeller-seccomp-\(getpid())"
    mkdir(dir, 0o700)
    atexit { try? FileManager.default.removeItem(atPath: (seccompCacheForTests as NSString).deletingLastPathComponent) }
    return dir + "/cache"
}()

struct CLIResult {
    var status: Int32
    var stdout: Data
    var stderr: Data
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// `propeller-run`, the small binary of the run path, beside `propeller`.
let propellerRunBinary = (propellerBinary as NSString).deletingLastPathComponent + "/propeller-run"

/// Runs `propeller ARGS` (or another of the built binaries), feeding `stdin`, and waits for it
/// (at most 60 s).
func propeller(_ args: [String], binary: String = propellerBinary, stdin: Data? = nil, environment extra: [String: String] = [:],
               whileRunning: ((Process) -> Void)? = nil) throws -> CLIResult {
    // Keep compiled seccomp programs out of the machine's /run/propeller during tests.
    var environment = ProcessInfo.processInfo.environment
    environment["PROPELLER_SECCOMP_CACHE"] = seccompCacheForTests
    for (k, v) in extra { environment[k] = v }
    let r = try runProcess(binary, args, stdin: stdin, environment: environment, whileRunning: whileRunning)
    if r.timedOut { throw PropellerError(.internalError, "\(binary) \(args.joined(separator: " ")) did not finish in 60 s") }
    return CLIResult(status: r.status, stdout: r.stdout, stderr: r.stderr)
}

@Suite("propeller run, as a user runs it", .enabled(if: isRoot, "requires root: propeller run creates namespaces and cgroups"))
struct CLITests {
    let rootfs: String
    init() throws { rootfs = try Fixture.path() }

    @Test(arguments: [Int32(0), 3, 200])
    func exitStatusIsTheCommands(code: Int32) throws {
        let r = try propeller(["run", "--rootfs", rootfs, "probe", "exit", String(code)])
        #expect(r.status == code)
        #expect(r.stderr.isEmpty)
    }

    @Test func notFoundIs127AndNotExecutableIs126() throws {
        let missing = try propeller(["run", "--rootfs", rootfs, "no-such-cmd"])
        #expect(missing.status == 127)
        #expect(missing.stderrText == "propeller: exec no-such-cmd: ENOENT (not found in the container)\n")
        let notExec = try propeller(["run", "--rootfs", rootfs, "/bin/not-executable"])
        #expect(notExec.status == 126)
        #expect(notExec.stderrText.contains("EACCES"))
    }

    @Test(arguments: [
        (["--memory", "banana"], "invalid --memory \"banana\""),
        (["--cpus", "0"], "invalid --cpus"),
        (["--pids", "zero"], "invalid --pids"),
        (["--timeout", "30"], "missing unit"),
        (["--network", "bridge"], "invalid --network"),
        (["--cap-add", "NOT_A_CAP"], "unknown capability"),
        (["--user", "ghost"], "user \"ghost\" not found"),
        (["--seccomp", "/nonexistent.json"], "seccomp profile"),
        (["--ulimit", "bogus=1"], "invalid ulimit"),
        (["--bogus"], "unknown option '--bogus'"),
        (["--scratch", "disk"], "--scratch and --scratch-size apply to --image runs only"),
    ])
    func badInputIsARuntimeErrorWithAClearMessage(flags: [String], message: String) throws {
        let r = try propeller(["run", "--rootfs", rootfs] + flags + ["true"])
        #expect(r.status == 125)
        #expect(r.stderrText.hasPrefix("propeller: "))
        #expect(r.stderrText.contains(message), "\(r.stderrText)")
    }

    @Test func missingRootfsIs125() throws {
        let r = try propeller(["run", "--rootfs", "/nonexistent", "true"])
        #expect(r.status == 125)
        #expect(r.stderrText == "propeller: rootfs /nonexistent: no such directory\n")
    }

    @Test func oomKillIs137WithAMessage() throws {
        let r = try propeller(["run", "--rootfs", rootfs, "--memory", "32M", "probe", "hog", "300"])
        #expect(r.status == 137)
        #expect(r.stderrText.contains("OOM killer: memory limit of 32 MiB exceeded"))
    }

    @Test func reportFileDescribesHowItEnded() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let path = tmp.path + "/report.json"
        let r = try propeller(["run", "--rootfs", rootfs, "--memory", "32M", "--report", path, "probe", "hog", "300"])
        #expect(r.status == 137)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        #expect(report["exit_code"] as? Int == 137)
        #expect(report["signal"] as? Int == 9)
        #expect(report["oom_killed"] as? Bool == true)
        #expect(report["timed_out"] as? Bool == false)
        #expect((report["memory_peak_bytes"] as? Int ?? 0) > 16 << 20)
        #expect((report["cpu_usec"] as? Int ?? 0) > 0)
    }

    @Test func timeoutIs124WithAMessage() throws {
        let r = try propeller(["run", "--rootfs", rootfs, "--timeout", "500ms", "probe", "ignore-term"])
        #expect(r.status == 124)
        #expect(r.stderrText.contains("timed out after 500ms"))
    }

    @Test func stdoutStderrAndStdinAreBinarySafe() throws {
        let all = Data((0...255).map { UInt8($0) })
        let r = try propeller(["run", "--rootfs", rootfs, "probe", "bytes"])
        #expect(r.status == 0)
        #expect(r.stdout == all)
        #expect(r.stderr == all)
        var big = Data()
        for i in 0..<(1 << 20) { big.append(UInt8(truncatingIfNeeded: i &* 31)) }
        let echoed = try propeller(["run", "--rootfs", rootfs, "probe", "cat"], stdin: big)
        #expect(echoed.status == 0)
        #expect(echoed.stdout == big)
    }

    @Test func killedFromOutsideIs128Plus9() throws {
        let r = try propeller(["run", "--rootfs", rootfs, "probe", "sleep", "30"]) { process in
            // The container's PID 1 is the CLI's only child.
            for _ in 0..<100 {
                if let child = childPID(of: process.processIdentifier) {
                    kill(child, SIGKILL)
                    return
                }
                usleep(20_000)
            }
        }
        #expect(r.status == 137)
        #expect(!r.stderrText.contains("OOM"))
    }

    /// A killed `propeller run` takes its container along (the parent-death signal), also when the
    /// task runs as another user: the kernel clears that signal when the uid changes, and a
    /// non-root task of a killed proplet used to keep running.
    @Test(arguments: ["0", "1000:1000"])
    func theContainerDiesWithAKilledCLI(user: String) throws {
        nonisolated(unsafe) var container: pid_t = 0
        nonisolated(unsafe) var gone = false
        nonisolated(unsafe) var cgroups: [String] = []
        // A killed CLI cannot remove the container's (now empty) cgroups: this test does.
        defer { for dir in cgroups { rmdir(dir) } }
        // The check runs while the CLI's pipes are still open: if the container outlived the
        // CLI it would hold them until its sleep ends.
        _ = try propeller(["run", "--rootfs", rootfs, "--user", user, "probe", "sleep", "20"]) { process in
            for _ in 0..<100 {
                if let child = childPID(of: process.processIdentifier) {
                    container = child
                    break
                }
                usleep(20_000)
            }
            guard container > 0 else { return }
            usleep(300_000)  // past its setup, into the command
            cgroups = taskCgroupDirectories(of: container)
            kill(process.processIdentifier, SIGKILL)
            for _ in 0..<150 {
                // Gone, or a zombie waiting for init to reap it.
                let state = readFile("/proc/\(container)/stat")?.split(separator: " ").dropFirst(2).first
                if state == nil || state == "Z" {
                    gone = true
                    return
                }
                usleep(20_000)
            }
            kill(container, SIGKILL)
        }
        #expect(container > 0)
        #expect(gone, "the container (pid \(container)) outlived its killed parent")
    }

    /// The task cgroup directories (`…/propeller/<id>`) of a container's process, in every
    /// hierarchy it belongs to.
    func taskCgroupDirectories(of pid: pid_t) -> [String] {
        let lines = readFile("/proc/\(pid)/cgroup")?.split(separator: "\n") ?? []
        return lines.flatMap { line -> [String] in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].range(of: #"/propeller/[0-9a-f]{64}$"#, options: .regularExpression) != nil else { return [] }
            let controller = fields[1].split(separator: ",").first.map { String($0.replacingOccurrences(of: "name=", with: "")) }
            let roots = controller.map { ["/sys/fs/cgroup/" + $0] } ?? ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            return roots.map { $0 + fields[2] }.filter { FileManager.default.fileExists(atPath: $0) }
        }
    }

    @Test func terminalSignalsAreForwarded() throws {
        let script = "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"
        let r = try propeller(["run", "--rootfs", rootfs, "sh", "-c", script]) { process in
            for _ in 0..<100 where childPID(of: process.processIdentifier) == nil { usleep(20_000) }
            usleep(200_000)
            kill(process.processIdentifier, SIGTERM)
        }
        #expect(r.status == 7)
        #expect(r.stdoutText == "ready\n")
    }

    @Test func flagsReachTheContainer() throws {
        let r = try propeller(["run", "--rootfs", rootfs, "--hostname", "box", "-e", "A=1", "--env", "B=two words",
                               "-w", "/tmp", "--cap-drop", "ALL", "--ulimit", "nofile=2048:4096", "--user", "1000:1000",
                               "--", "probe"])
        #expect(r.status == 0, "\(r.stderrText)")
        let p = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        #expect(p["hostname"] as? String == "box")
        #expect(p["cwd"] as? String == "/tmp")
        #expect(p["CapBnd"] as? String == "0000000000000000")
        #expect(p["nofile"] as? [Int] == [2048, 4096])
        #expect(p["uid"] as? Int == 1000)
        let env = try propeller(["run", "--rootfs", rootfs, "-e", "A=1", "--env", "B=two words", "sh", "-c", "echo \"$A|$B\""])
        #expect(env.stdoutText == "1|two words\n")
    }

    @Test func customSeccompProfileApplies() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        writeFile(tmp.path + "/deny-mkdir.json", """
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
        """)
        let r = try propeller(["run", "--rootfs", rootfs, "--seccomp", tmp.path + "/deny-mkdir.json", "mkdir", "/tmp/nope"])
        #expect(r.status == 1)
        #expect(r.stderrText.contains("Operation not permitted"))
        let ok = try propeller(["run", "--rootfs", rootfs, "--seccomp", "unconfined", "probe"])
        #expect(ok.stdoutText.contains("\"Seccomp\":\"0\""))
    }

    /// The CLI's own words: the overview wraps without stray runs of spaces, a word that names
    /// no command is an error naming the commands there are (not the parent's help, exit 0),
    /// and only a usage error points at the help.
    @Test func unknownCommandsAreErrorsAndOnlyUsageErrorsPointAtTheHelp() throws {
        let root = try propeller(["--help"])
        #expect(root.status == 0)
        for line in root.stdoutText.split(separator: "\n") where !line.hasPrefix(" ") {
            #expect(!line.contains("  "), "a run of spaces in the overview: \(line)")
        }
        let unknown = try propeller(["workflow", "--help"])
        #expect(unknown.status == 125 && unknown.stdout.isEmpty, "\(unknown.status) \(unknown.stdoutText)")
        #expect(unknown.stderrText.contains("unknown command 'workflow'") && unknown.stderrText.contains("See 'propeller --help'."), "\(unknown.stderrText)")
        let nested = try propeller(["task", "frobnicate"])
        #expect(nested.status == 125 && nested.stderrText.contains("unknown command 'frobnicate' for 'propeller task'") && nested.stderrText.contains("stats"),
                "\(nested.stderrText)")
        #expect(try propeller(["proplet", "list", "--help"]).status == 0)
        #expect(try propeller(["help", "task"]).status == 0)
        let usage = try propeller(["task", "list", "--bogus"])
        #expect(usage.status == 125 && usage.stderrText.contains("See 'propeller task list --help'."), "\(usage.stderrText)")
        // A failure that is not a usage error: its reason, no pointer to the help.
        let data = try TempDirectory("propeller-cli-data")
        defer { data.remove() }
        for binary in [propellerBinary, propellerRunBinary] {
            let args = (binary == propellerBinary ? ["run"] : []) + ["--image", "127.0.0.1:1/nope:v1", "--data-dir", data.path, "/bin/true"]
            let unreachable = try propeller(args, binary: binary)
            #expect(unreachable.status == 125 && unreachable.stderrText.contains("127.0.0.1:1") && !unreachable.stderrText.contains("--help"),
                    "\(binary): \(unreachable.stderrText)")
        }
    }

    @Test func helpDocumentsTheExitStatuses() throws {
        let r = try propeller(["run", "--help"])
        #expect(r.status == 0)
        for needle in ["124", "125", "126", "127", "137", "--memory", "--seccomp"] {
            #expect(r.stdoutText.contains(needle), "help lacks \(needle)")
        }
    }
}

/// The first child of `pid`, from /proc/PID/task/PID/children.
func childPID(of pid: pid_t) -> pid_t? {
    guard let text = readFile("/proc/\(pid)/task/\(pid)/children") else { return nil }
    return text.split(separator: " ").first.flatMap { pid_t($0) }
}
