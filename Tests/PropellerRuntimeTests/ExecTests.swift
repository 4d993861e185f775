import Foundation
import CLauncher
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

/// `RunningContainer.exec`: a second process in a running container, on the real kernel. It must
/// see what the container's PID 1 sees and hold no more than it does.
@Suite("Exec into a running container (root)", .serialized, .enabled(if: isRoot, "requires root: namespaces, mounts and cgroups"))
struct ExecTests {
    let runtime: ContainerRuntime

    init() throws {
        runtime = try ContainerRuntime()
    }

    /// Starts `probe sleep 60` (configured by `configure`), runs `body` with it, then kills it.
    func withContainer<T>(_ configure: (inout ContainerSpec) -> Void = { _ in }, _ body: (RunningContainer) throws -> T) throws -> T {
        var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["probe", "sleep", "60"])
        spec.hostname = "exec-host"
        configure(&spec)
        let container = try runtime.start(spec)
        defer {
            container.killAll()
            _ = container.wait()
        }
        return try body(container)
    }

    /// Runs `command` in `container`; its exit code and what it wrote to stdout and stderr.
    func exec(_ container: RunningContainer, _ command: [String], environment: [String] = [], workingDirectory: String? = nil) throws -> (Int32, String, String) {
        let tmp = try TempDirectory("propeller-exec")
        defer { tmp.remove() }
        let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        let err = open(tmp.path + "/err", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(out); close(err); close(null) }
        let process = try container.exec(ExecRequest(command: command, environment: environment, workingDirectory: workingDirectory, stdio: [null, out, err]))
        let code = process.wait()
        return (code, readFile(tmp.path + "/out") ?? "", readFile(tmp.path + "/err") ?? "")
    }

    func json(_ text: String) throws -> [String: Any] {
        let line = try #require(text.split(separator: "\n").last.map(String.init))
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func seesTheContainerAndHoldsWhatItsPID1Holds() throws {
        try withContainer { container throws in
            let (code, out, err) = try exec(container, ["probe"])
            #expect(code == 0, "stderr: \(err)")
            let p = try json(out)
            // In the container's pid namespace, not its PID 1, with no parent there (as runc exec).
            let pid = try #require(p["pid"] as? Int)
            #expect(pid > 1)
            #expect(p["ppid"] as? Int == 0)
            #expect(p["hostname"] as? String == "exec-host")
            #expect(p["interfaces"] as? [String] == ["lo"])
            let netns = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(container.pid)/ns/net")
            #expect(p["netns"] as? String == netns)
            // In the task's cgroups, each the root of the cgroup namespace it shares with PID 1.
            let cgroup = try #require(p["cgroup"] as? String)
            #expect(cgroup.split(separator: "\n").allSatisfy { $0.hasSuffix(":/") }, "\(cgroup)")
            let cgroupNS = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(container.pid)/ns/cgroup")
            let (_, ns, _) = try exec(container, ["ls", "-l", "/proc/self/ns/cgroup"])
            #expect(ns.hasSuffix("-> " + cgroupNS + "\n"), "\(ns)")
            #expect(p["CapEff"] as? String == "00000000a80405fb")
            #expect(p["CapBnd"] as? String == "00000000a80405fb")
            #expect(p["CapAmb"] as? String == "0000000000000000")
            #expect(p["Seccomp"] as? String == "2")
            #expect(p["NoNewPrivs"] as? String == "1")
            #expect(p["fds"] as? [Int] == [0, 1, 2])
            #expect(p["write_proc_sys"] as? String == "EROFS")
            let syscalls = try #require(p["syscalls"] as? [String: String])
            #expect(syscalls["mount"] == "EPERM")
            #expect(syscalls["unshare"] == "EPERM")
            // The container's PID 1 is the task's command.
            let (_, cmdline, _) = try exec(container, ["cat", "/proc/1/cmdline"])
            #expect(cmdline.split(separator: "\0").map(String.init) == ["probe", "sleep", "60"])
            // It counts in the task's cgroup while it runs.
            #expect(container.usage().pids ?? 0 >= 1)
        }
    }

    @Test func neverMoreThanATaskWithFewerCapabilitiesAndAnotherUser() throws {
        try withContainer({ spec in
            spec.capabilities = (try? spec.capabilities.adjusted(adding: [], dropping: ["CHOWN", "KILL"])) ?? spec.capabilities
        }) { container throws in
            let p = try json(try exec(container, ["probe"]).1)
            #expect(p["CapEff"] as? String == "00000000a80405da")
            #expect(p["CapBnd"] as? String == "00000000a80405da")
        }
        try withContainer({ spec in
            spec.user = "app"
            spec.workingDirectory = "/home/app"
        }) { container throws in
            let p = try json(try exec(container, ["probe"]).1)
            #expect(p["uid"] as? Int == 1000)
            #expect(p["gid"] as? Int == 1000)
            #expect(p["groups"] as? [Int] == [50])
            #expect(p["cwd"] as? String == "/home/app")
            #expect(p["CapEff"] as? String == "0000000000000000")
        }
    }

    @Test func environmentAndWorkingDirectory() throws {
        try withContainer({ $0.environment = ["A=task", "B=task"] }) { container throws in
            let (code, out, _) = try exec(container, ["sh", "-c", "echo $A $B $C; pwd"], environment: ["B=exec", "C=new"], workingDirectory: "/tmp")
            #expect(code == 0)
            #expect(out == "task exec new\n/tmp\n")
        }
    }

    @Test func exitCodesAndMissingCommands() throws {
        try withContainer { container throws in
            #expect(try exec(container, ["sh", "-c", "exit 7"]).0 == 7)
            #expect(try exec(container, ["sh", "-c", "kill -9 $$"]).0 == 137)
            let missing = #expect(throws: LaunchError.self) { _ = try exec(container, ["no-such-command"]) }
            #expect(missing?.isExecFailure == true && missing?.errno == ENOENT && missing?.exitStatus == 127)
            #expect(throws: LaunchError.self) { _ = try exec(container, ["true"], workingDirectory: "/no/such/dir") }
        }
    }

    @Test func endsWithTheContainerAndIsRefusedAfterIt() throws {
        var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["probe", "sleep", "60"])
        spec.hostname = "exec-host"
        let container = try runtime.start(spec)
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let process = try container.exec(ExecRequest(command: ["sleep", "60"], stdio: [null, null, null]))
        // PID 1 gone: the kernel kills the rest of its pid namespace, the exec'd process too. PID 1
        // finishes exiting only once that process is reaped: it is waited for first.
        container.signal(SIGKILL)
        #expect(process.wait() == 137)
        _ = container.wait()
        #expect(throws: PropellerError.self) { _ = try container.exec(ExecRequest(command: ["true"], stdio: [null, null, null])) }
    }

    @Test func aTerminalBecomesTheControllingOne() throws {
        try withContainer { container throws in
            var leader: Int32 = -1
            var follower: Int32 = -1
            try #require(pl_openpty(&leader, &follower, 33, 101) == 0)
            defer { close(leader) }
            let process = try container.exec(ExecRequest(command: ["sh", "-c", "[ -t 0 ] && echo tty; stty size; echo \"ctty $(cat /proc/self/stat | cut -d' ' -f7)\""],
                                                         terminal: true, stdio: [follower, follower, follower]))
            close(follower)
            var output: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(leader, &buffer, buffer.count)
                if n <= 0 { break }  // EIO once the last follower end closed
                output += buffer[..<n]
            }
            #expect(process.wait() == 0)
            let text = String(decoding: output, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
            #expect(text.hasPrefix("tty\n33 101\n"), "\(text)")
            // tty_nr (field 7) is non-zero: the terminal is the process's controlling terminal.
            #expect(!text.contains("ctty 0\n") && text.contains("ctty "), "\(text)")
        }
    }
}
