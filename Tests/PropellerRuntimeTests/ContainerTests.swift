import Foundation
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

/// The runtime for real: namespaces, mounts, cgroups, capabilities and seccomp on this kernel.
/// Serialized so the leak checks below see only their own containers.
@Suite("Containers on the real kernel (root)", .serialized, .enabled(if: isRoot, "requires root: namespaces, mounts and cgroups"))
struct ContainerTests {
    let runtime: ContainerRuntime

    init() throws {
        runtime = try ContainerRuntime()
    }

    /// Runs `command` in the fixture rootfs and returns its report and captured stdout/stderr.
    func run(_ command: [String], timeout: Duration? = nil, configure: (inout ContainerSpec) -> Void = { _ in }) throws -> (ExitReport, String, String) {
        let tmp = try TempDirectory("propeller-out")
        defer { tmp.remove() }
        let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        let err = open(tmp.path + "/err", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(out); close(err) }
        var spec = ContainerSpec(rootfs: try Fixture.path(), command: command)
        spec.stdio = [-1, out, err]
        configure(&spec)
        let container = try runtime.start(spec)
        let report = container.wait(timeout: timeout)
        return (report, readFile(tmp.path + "/out") ?? "", readFile(tmp.path + "/err") ?? "")
    }

    func json(_ text: String) throws -> [String: Any] {
        let line = try #require(text.split(separator: "\n").last.map(String.init))
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func probeSeesAnIsolatedProcess() throws {
        let (report, out, err) = try run(["probe"]) { $0.hostname = "probe-host" }
        #expect(report.exitCode == 0, "stderr: \(err)")
        let p = try json(out)
        #expect(p["pid"] as? Int == 1)
        #expect(p["ppid"] as? Int == 0)
        #expect(p["hostname"] as? String == "probe-host")
        #expect(p["interfaces"] as? [String] == ["lo"])
        #expect(p["lo_up"] as? Bool == true)
        #expect(p["CapEff"] as? String == "00000000a80405fb")
        #expect(p["CapBnd"] as? String == "00000000a80405fb")
        #expect(p["CapPrm"] as? String == "00000000a80405fb")
        #expect(p["CapInh"] as? String == "0000000000000000")
        #expect(p["CapAmb"] as? String == "0000000000000000")
        #expect(p["Seccomp"] as? String == "2")
        #expect(p["NoNewPrivs"] as? String == "1")
        #expect(p["fds"] as? [Int] == [0, 1, 2])
        #expect((p["nofile"] as? [Int]) == [1024, 1024])
        #expect(p["path_env"] as? String == ContainerSpec.defaultPath)
        #expect(p["home_env"] as? String == "/root")
        #expect(p["write_proc_sys"] as? String == "EROFS")
        let masked = try #require(p["masked"] as? [String: Int])
        for (path, bytes) in masked { #expect(bytes <= 0, "\(path) is readable") }
        let readonly = try #require(p["readonly"] as? [String: Int])
        #expect(readonly["/sys"] == 1)
        #expect(readonly["/proc/sys"] == 1)
        #expect(readonly["/"] == 0)
        let syscalls = try #require(p["syscalls"] as? [String: String])
        for name in ["mount", "unshare", "keyctl", "add_key", "ptrace", "setns", "bpf", "kexec_load", "personality_unsafe", "clone_newnet", "sethostname"] {
            #expect(syscalls[name] == "EPERM", "\(name): \(syscalls[name] ?? "missing")")
        }
        #expect(syscalls["fork"] == "ok")
        #expect(syscalls["personality_query"] == "ok")
        #expect(syscalls["chroot"] == "ok")
        // mknod is allowed (CAP_MKNOD, as in Docker) but the node cannot be opened: nodev mounts.
        #expect(syscalls["mknod_dev"] == "ok")
        #expect(syscalls["open_dev_node"] == "EACCES")
        #expect(syscalls["open_tmp_node"] == "EACCES")
        #expect(syscalls["open_dev_null"] == "ok")
        // The cgroup namespace is rooted at the task's own cgroup.
        let cgroup = try #require(p["cgroup"] as? String)
        #expect(cgroup.split(separator: "\n").allSatisfy { $0.hasSuffix(":/") })
    }

    @Test func pooledNetworkNamespacesAreFreshAndPrivate() throws {
        let pooled = try ContainerRuntime(networkNamespacePool: 2)
        pooled.networkPool?.fill()
        #expect(pooled.networkPool?.available == 2)
        var seen = Set<String>()
        let hostNetns = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? ""
        for _ in 0..<4 {
            let tmp = try TempDirectory("propeller-out")
            defer { tmp.remove() }
            let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            defer { close(out) }
            var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["probe"])
            spec.stdio = [-1, out, -1]
            #expect(try pooled.start(spec).wait().exitCode == 0)
            let p = try json(readFile(tmp.path + "/out") ?? "")
            #expect(p["interfaces"] as? [String] == ["lo"])
            #expect(p["lo_up"] as? Bool == true)
            let netns = try #require(p["netns"] as? String)
            #expect(netns != hostNetns)
            #expect(seen.insert(netns).inserted, "network namespace \(netns) was used twice")
        }
    }

    @Test func hostNetworkAndAddedCapabilitiesAndNoSeccomp() throws {
        let (report, out, _) = try run(["probe"]) {
            $0.network = .host
            $0.capabilities = (try? CapabilitySet.defaultSet.adjusted(adding: ["NET_RAW"], dropping: [])) ?? .defaultSet
            $0.seccomp = .unconfined
        }
        #expect(report.exitCode == 0)
        let p = try json(out)
        #expect((p["interfaces"] as? [String])?.count ?? 0 > 1)
        #expect(p["CapEff"] as? String == "00000000a80425fb")
        #expect(p["Seccomp"] as? String == "0")
        // Without CAP_SYS_ADMIN the kernel itself still refuses mount.
        #expect((p["syscalls"] as? [String: String])?["mount"] == "EPERM")
    }

    @Test func nonRootUserHasNoEffectiveCapabilities() throws {
        let (report, out, _) = try run(["probe"]) {
            $0.user = "app"
            $0.workingDirectory = "/home/app"
        }
        #expect(report.exitCode == 0)
        let p = try json(out)
        #expect(p["uid"] as? Int == 1000)
        #expect(p["gid"] as? Int == 1000)
        #expect(p["groups"] as? [Int] == [50])
        #expect(p["cwd"] as? String == "/home/app")
        #expect(p["CapEff"] as? String == "0000000000000000")
        #expect(p["CapBnd"] as? String == "00000000a80405fb")
        #expect(p["home_env"] as? String == "/home/app")
    }

    @Test func readOnlyRootfs() throws {
        // The report goes into each message: a CI run once saw a failure with an empty stderr.
        let (report, _, err) = try run(["sh", "-c", "touch /newfile"]) { $0.readOnlyRootfs = true }
        #expect(report.exitCode == 1, "report: \(report), stderr: \(err)")
        #expect(err.contains("Read-only file system"), "report: \(report), stderr: \(err)")
        let (ok, _, okErr) = try run(["sh", "-c", "touch /dev/shm/x"]) { $0.readOnlyRootfs = true }
        #expect(ok.exitCode == 0, "report: \(ok), stderr: \(okErr)")
    }

    @Test(arguments: [Int32(0), 3, 42, 255])
    func exitCodesPassThrough(code: Int32) throws {
        let (report, _, _) = try run(["probe", "exit", String(code)])
        #expect(report.exitCode == code)
        #expect(report.signal == nil)
    }

    @Test func killedBySignalIs128PlusN() throws {
        var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["probe", "sleep", "30"])
        spec.stdio = [-1, -1, -1]
        let container = try runtime.start(spec)
        container.signal(SIGKILL)
        let report = container.wait()
        #expect(report.exitCode == 128 + 9)
        #expect(report.signal == 9)
        #expect(!report.oomKilled)
    }

    @Test func missingAndNonExecutableCommands() throws {
        let notFound = #expect(throws: LaunchError.self) { try run(["no-such-command"]) }
        #expect(notFound?.exitStatus == 127)
        #expect(notFound?.description.contains("no-such-command") == true)
        let notExec = #expect(throws: LaunchError.self) { try run(["/bin/not-executable"]) }
        #expect(notExec?.exitStatus == 126)
    }

    @Test func missingRootfsIsAClearError() throws {
        let spec = ContainerSpec(rootfs: "/nonexistent/rootfs", command: ["true"])
        let error = #expect(throws: PropellerError.self) { try runtime.start(spec) }
        #expect(error?.code == .notFound)
        #expect(error?.message == "rootfs /nonexistent/rootfs: no such directory")
    }

    @Test func setupFailuresNameTheStageAndErrno() throws {
        // An rlimit above the hard limit root may set here fails in the child, with its stage.
        var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["true"])
        spec.resourceLimits = [ContainerSpec.ResourceLimit(resource: 7, soft: 1 << 40, hard: 1 << 40)]
        let error = #expect(throws: LaunchError.self) { try runtime.start(spec) }
        #expect(error?.description == "set rlimit: EPERM")
        #expect(error?.exitStatus == 125)
    }

    @Test func memoryLimitOOMKillsAndIsReported() throws {
        let (report, _, _) = try run(["probe", "hog", "200"]) { $0.limits.memoryBytes = 32 << 20 }
        #expect(report.exitCode == 137)
        #expect(report.signal == 9)
        #expect(report.oomKilled)
        #expect((report.usage.memoryPeakBytes ?? 0) >= 16 << 20)
        #expect((report.usage.memoryPeakBytes ?? UInt64.max) <= 33 << 20)
    }

    @Test func pidsLimitStopsAForkBomb() throws {
        let (report, out, _) = try run(["probe", "forkbomb", "200"]) { $0.limits.pids = 16 }
        #expect(report.exitCode == 0)
        let p = try json(out)
        let forked = try #require(p["forked"] as? Int)
        #expect(forked < 16)
        #expect(p["error"] as? String == "EAGAIN")
    }

    @Test func cpuLimitThrottlesABusyLoop() throws {
        let (report, out, _) = try run(["probe", "spin", "1.5"]) { $0.limits.cpuMillis = 200 }
        #expect(report.exitCode == 0)
        let ratio = try #require(try json(out)["ratio"] as? Double)
        #expect(ratio <= 0.25, "used \(ratio) of a CPU with a 0.2 CPU limit")
        #expect((report.usage.throttledPeriods ?? 0) > 0)
        #expect((report.usage.cpuUsageMicros ?? 0) > 100_000)
    }

    @Test func timeoutKillsATreeThatIgnoresSIGTERM() throws {
        let started = ContinuousClock.now
        let (report, out, _) = try run(["probe", "ignore-term"], timeout: .milliseconds(700))
        #expect(report.timedOut)
        #expect(report.exitCode == 137)
        #expect(out.contains("ready"))
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func stopSendsTermThenKillsAfterGrace() throws {
        var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["probe", "ignore-term"])
        spec.stdio = [-1, open("/dev/null", O_WRONLY | O_CLOEXEC), -1]
        defer { close(spec.stdio[1]) }
        let container = try runtime.start(spec)
        usleep(100_000)
        container.stop(grace: .milliseconds(300))
        let report = container.wait()
        #expect(report.exitCode == 137)
        #expect(!report.timedOut)
    }

    @Test func stdoutAndStderrAreBinarySafe() throws {
        let tmp = try TempDirectory("propeller-bytes")
        defer { tmp.remove() }
        // Raw bytes: decoding as a String would mangle 0x80-0xff.
        let fd = open(tmp.path + "/o", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(fd) }
        var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["probe", "bytes"])
        spec.stdio = [-1, fd, fd]
        let report = try runtime.start(spec).wait()
        #expect(report.exitCode == 0)
        let expected = Data((0...255).map { UInt8($0) })
        let data = try Data(contentsOf: URL(fileURLWithPath: tmp.path + "/o"))
        #expect(data == expected + expected)
    }

    @Test func environmentWorkdirAndHostnameDefaults() throws {
        let id = ContainerID()
        let (report, out, _) = try run(["sh", "-c", "echo $FOO:$HOSTNAME:$(hostname):$(pwd)"]) {
            $0.id = id
            $0.environment = ["FOO=bar baz"]
            $0.workingDirectory = "/tmp/made/here"
        }
        #expect(report.exitCode == 0)
        #expect(out == "bar baz:\(id.short):\(id.short):/tmp/made/here\n")
    }

    /// 200 containers back to back leave no cgroup, mount, descriptor or process behind.
    @Test func twoHundredRunsLeaveNothingBehind() throws {
        let fdsBefore = openDescriptors()
        // Mounts under the rootfs in this (the host's) namespace: other tests of this process
        // mount and unmount their own things meanwhile, so only these are counted.
        let rootfs = try Fixture.path()
        func rootfsMounts() -> Int { readFile("/proc/self/mountinfo")?.split(separator: "\n").filter { $0.contains(rootfs) }.count ?? -1 }
        let mountsBefore = rootfsMounts()
        var ids: [ContainerID] = []
        for i in 0..<200 {
            var spec = ContainerSpec(rootfs: try Fixture.path(), command: ["true"])
            spec.limits = CgroupLimits(memoryBytes: 64 << 20, cpuMillis: 500, pids: 32)
            if i % 2 == 0 { spec.network = .host }
            ids.append(spec.id)
            let report = try runtime.start(spec).wait()
            #expect(report.exitCode == 0)
        }
        #expect(openDescriptors() == fdsBefore)
        #expect(rootfsMounts() == mountsBefore)
        let layout = runtime.cgroups.layout
        let owns = Set(layout.v1.values.map(\.ownDirectory) + [layout.unified?.ownDirectory].compactMap { $0 })
        for own in owns {
            for id in ids {
                #expect(!FileManager.default.fileExists(atPath: "\(own)/propeller/\(id.hex)"))
            }
        }
    }

    /// Descriptors only the runtime opens (pidfds, cgroup files, seccomp memfds), so tests running
    /// beside this one (which open pipes) do not disturb the count.
    private func openDescriptors() -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { fd in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd)) ?? ""
            return target.contains("pidfd") || target.contains("/sys/fs/cgroup") || target.contains("memfd") || target.contains("rootfs")
        }.count
    }
}
