import Foundation
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

/// Volumes and tmpfs mounts on the real kernel: what a task sees, what it may do there, and
/// that an image cannot steer a mount out of its root.
@Suite("Volumes and tmpfs mounts (root)", .serialized, .enabled(if: isRoot, "requires root: namespaces and mounts"))
struct VolumeMountTests {
    let runtime: ContainerRuntime

    init() throws {
        runtime = try ContainerRuntime()
    }

    func hostMounts(containing text: String) -> Int {
        readFile("/proc/self/mountinfo")?.split(separator: "\n").filter { $0.contains(text) }.count ?? -1
    }

    /// Runs `script` with `mounts` on an overlay of the fixture whose upper layer `tmp/upper` the
    /// caller may have seeded; the exit code and the output.
    func run(_ script: String, mounts: [ContainerSpec.Mount], in tmp: TempDirectory, readOnlyRoot: Bool = false) throws -> (Int32?, String) {
        mkdirs(tmp.path + "/root")
        let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(out) }
        var spec = ContainerSpec(rootfs: tmp.path + "/root", command: ["sh", "-c", script])
        spec.overlay = ContainerSpec.Overlay(lower: [try Fixture.path()], upper: tmp.path + "/upper", work: tmp.path + "/work")
        spec.mounts = mounts
        spec.readOnlyRootfs = readOnlyRoot
        spec.stdio = [-1, out, out]
        let report = try runtime.start(spec).wait(timeout: .seconds(30))
        return (report.exitCode, readFile(tmp.path + "/out") ?? "")
    }

    @Test func aTaskReadsAVolumeWritesAnotherAndFillsItsTmpfs() throws {
        let tmp = try TempDirectory("propeller-volumes")
        defer { tmp.remove() }
        mkdirs(tmp.path + "/input")
        mkdirs(tmp.path + "/output")
        writeFile(tmp.path + "/input/in", "hello from the host\n")
        let script = """
            cat /data/in
            echo no > /data/written && echo WROTE-TO-A-READ-ONLY-VOLUME
            echo result > /out/sub/r || echo cannot-write-out
            dd if=/dev/zero of=/scratch/fits bs=64k count=8 2>/dev/null && echo fits
            dd if=/dev/zero of=/scratch/big bs=64k count=64 2>/dev/null || echo scratch-full
            grep -E ' /(data|out/sub|scratch) ' /proc/mounts
            """
        let (code, output) = try run(script, mounts: [
            ContainerSpec.Mount(.bind(tmp.path + "/input"), at: "/data", readOnly: true),
            ContainerSpec.Mount(.bind(tmp.path + "/output"), at: "/out/sub"),
            ContainerSpec.Mount(.tmpfs(sizeBytes: 1 << 20), at: "/scratch"),
        ], in: tmp, readOnlyRoot: true)
        #expect(code == 0, "\(output)")
        #expect(output.contains("hello from the host"))
        #expect(!output.contains("WROTE-TO-A-READ-ONLY-VOLUME"), "\(output)")
        #expect(readFile(tmp.path + "/input/written") == nil)
        #expect(readFile(tmp.path + "/output/r") == "result\n", "\(output)")
        #expect(output.contains("fits\n") && output.contains("scratch-full"), "a 1 MiB tmpfs holds 512 KiB, not 4 MiB: \(output)")
        let lines = output.split(separator: "\n").filter { $0.contains(" /data ") || $0.contains(" /out/sub ") || $0.contains(" /scratch ") }
        #expect(lines.count == 3, "\(output)")
        for line in lines {
            let options = line.split(separator: " ")[3].split(separator: ",")
            #expect(options.contains("nosuid") && options.contains("nodev"), "\(line)")
            #expect(options.contains("ro") == line.contains(" /data "), "\(line)")
        }
        #expect(hostMounts(containing: tmp.path) == 0, "nothing stays mounted on the host")
    }

    /// An image whose paths are symlinks to the host's directories (absolute, and relative
    /// with more `..` than there are levels, and a magic link): each resolves inside the
    /// container's root, or the start fails; nothing is made or mounted on the host.
    @Test func aSymlinkInTheImageCannotSendAMountOntoTheHost() throws {
        let tmp = try TempDirectory("propeller-volumes")
        defer { tmp.remove() }
        let outside = tmp.path + "/host-side"  // exists on the host, not in the container
        mkdirs(outside)
        writeFile(outside + "/marker", "host\n")
        let unique = "propeller-" + UUID().uuidString
        mkdirs(tmp.path + "/upper")
        mkdirs(tmp.path + "/vol")
        symlink(outside, tmp.path + "/upper/evil")
        symlink(String(repeating: "../", count: 12) + "tmp", tmp.path + "/upper/rel")
        symlink("/tmp", tmp.path + "/upper/abs")
        symlink("/proc/self/root" + outside, tmp.path + "/upper/magic")

        // Into /tmp of the container, however many levels the symlink climbs.
        let (code, output) = try run("echo in > /abs/\(unique)/deeper/f && touch /rel/\(unique)-t/x && echo done", mounts: [
            ContainerSpec.Mount(.bind(tmp.path + "/vol"), at: "/abs/\(unique)/deeper"),
            ContainerSpec.Mount(.tmpfs(sizeBytes: nil), at: "/rel/\(unique)-t"),
        ], in: tmp)
        #expect(code == 0, "\(output)")
        #expect(readFile(tmp.path + "/vol/f") == "in\n", "the volume was mounted inside the container: \(output)")
        #expect(FileManager.default.fileExists(atPath: tmp.path + "/upper/tmp/\(unique)/deeper"), "its mount point was made in the container's root")
        #expect(FileManager.default.fileExists(atPath: tmp.path + "/upper/tmp/\(unique)-t"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(unique)") && !FileManager.default.fileExists(atPath: "/tmp/\(unique)-t"))

        // Where the host path exists but the container's does not, the start fails: the mount
        // point is not made on the host, nor anything mounted there.
        for target in ["/evil/sub", "/magic/x"] {
            #expect(throws: (any Error).self, "\(target)") {
                _ = try run("true", mounts: [ContainerSpec.Mount(.bind(tmp.path + "/vol"), at: target)], in: tmp)
            }
        }
        #expect((try? FileManager.default.contentsOfDirectory(atPath: outside)) == ["marker"])
        #expect(hostMounts(containing: tmp.path) == 0)
    }

    /// A secret's file: readable by the task's user alone, read-only, on no disk.
    @Test func aSecretFileIsTheTasksAloneAndReadOnly() throws {
        let tmp = try TempDirectory("propeller-volumes")
        defer { tmp.remove() }
        let value: [UInt8] = Array("pa55-\u{0}-word\n".utf8) + [0xff, 0x00]
        mkdirs(tmp.path + "/root")
        let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(out) }
        var spec = ContainerSpec(rootfs: tmp.path + "/root", command: ["sh", "-c", """
            stat -c '%a %u %s' /run/secrets/db
            cmp /run/secrets/db /copy && echo same
            echo x > /run/secrets/db || echo cannot-write
            grep ' /run/secrets/db ' /proc/mounts
            """])
        spec.overlay = ContainerSpec.Overlay(lower: [try Fixture.path()], upper: tmp.path + "/upper", work: tmp.path + "/work")
        mkdirs(tmp.path + "/upper")
        #expect(FileManager.default.createFile(atPath: tmp.path + "/upper/copy", contents: Data(value)))
        chmod(tmp.path + "/upper/copy", 0o644)
        spec.user = "app"
        spec.mounts = [ContainerSpec.Mount(.file(value), at: "/run/secrets/db", readOnly: true)]
        spec.stdio = [-1, out, out]
        let report = try runtime.start(spec).wait(timeout: .seconds(30))
        let output = readFile(tmp.path + "/out") ?? ""
        #expect(report.exitCode == 0, "\(output)")
        #expect(output.hasPrefix("400 1000 \(value.count)\nsame\n"), "\(output)")
        #expect(output.contains("cannot-write"))
        let options = output.split(separator: "\n").last { $0.contains("/run/secrets/db") }?.split(separator: " ")[3].split(separator: ",") ?? []
        #expect(options.contains("ro") && options.contains("nosuid") && options.contains("nodev") && options.contains("noexec"), "\(output)")
        #expect(output.contains(" /run/secrets/db tmpfs "), "on a tmpfs: \(output)")
        // Only the mount point (an empty file) is in the container's layer.
        #expect((try? Data(contentsOf: URL(fileURLWithPath: tmp.path + "/upper/run/secrets/db")))?.isEmpty == true)
    }

    /// A FIFO where a secret or file goes (an image's trap for the launcher): the start fails at
    /// once instead of waiting for a reader.
    @Test func aFIFOAtAFileTargetFailsTheStartInsteadOfHangingIt() throws {
        let tmp = try TempDirectory("propeller-volumes")
        defer { tmp.remove() }
        mkdirs(tmp.path + "/upper/run/secrets")
        #expect(mkfifo(tmp.path + "/upper/run/secrets/db", 0o644) == 0)
        let started = ContinuousClock.now
        #expect(throws: (any Error).self) {
            _ = try run("true", mounts: [ContainerSpec.Mount(.file(Array("v".utf8)), at: "/run/secrets/db", readOnly: true)], in: tmp)
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func targetsTheRuntimeOwnsAreRefused() {
        for bad in ["/", "relative", "/proc", "/proc/sys", "/sys/x", "/dev", "/dev/shm", "/a/../etc", "/./x"] {
            #expect(throws: PropellerError.self, "\(bad)") { try MountTarget.check(bad, what: "volume") }
        }
        #expect((try? MountTarget.check("/data//sub/", what: "volume")) == "/data/sub")
        #expect((try? MountTarget.check("/devices", what: "volume")) == "/devices")
        #expect(throws: PropellerError.self) { try MountTarget.checkDistinct(["/a", "/b", "/a"]) }
    }
}
