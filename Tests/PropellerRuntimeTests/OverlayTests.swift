import Foundation
import Logging
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

/// Overlay root filesystems on the real kernel, mounted both ways: detached with the mount API
/// while the rest is prepared (the default), and by the child with mount(2) (old kernels).
@Suite("Overlay rootfs (root)", .serialized, .enabled(if: isRoot, "requires root: namespaces, overlayfs and cgroups"))
struct OverlayTests {
    func contents(_ path: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    func hostMounts(containing text: String) -> Int {
        readFile("/proc/self/mountinfo")?.split(separator: "\n").filter { $0.contains(text) }.count ?? -1
    }

    @Test(arguments: [true, false])
    func writesGoToTheUpperLayerOnly(mountAPI: Bool) throws {
        let runtime = try ContainerRuntime(overlayMountAPI: mountAPI)
        let tmp = try TempDirectory("propeller-overlay")
        defer { tmp.remove() }
        let lower = try Fixture.path()
        let lowerBefore = contents(lower)
        try FileManager.default.createDirectory(atPath: tmp.path + "/root", withIntermediateDirectories: true)
        let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(out) }
        // The runtime makes the upper and work directories itself.
        var spec = ContainerSpec(rootfs: tmp.path + "/root", command: ["sh", "-c", "echo made > /made && rm /etc/group && head -1 /etc/passwd"])
        spec.overlay = ContainerSpec.Overlay(lower: [lower], upper: tmp.path + "/upper", work: tmp.path + "/work")
        spec.stdio = [-1, out, out]
        let report = try runtime.start(spec).wait()
        #expect(report.exitCode == 0, "output: \(readFile(tmp.path + "/out") ?? "")")
        #expect(readFile(tmp.path + "/out") == "root:x:0:0:root:/root:/bin/sh\n")
        #expect(readFile(tmp.path + "/upper/made") == "made\n")
        // The deletion is a whiteout in the upper layer; the image's copy is untouched.
        #expect(FileManager.default.fileExists(atPath: lower + "/etc/group"))
        #expect(contents(lower) == lowerBefore)
        // Nothing stays mounted in this (the host's) namespace, on the mount point or elsewhere.
        #expect(hostMounts(containing: tmp.path) == 0)
        #expect(contents(tmp.path + "/root") == [])
        if mountAPI {
            // overlayfs's volatile marker was removed right after the mount.
            #expect(!FileManager.default.fileExists(atPath: tmp.path + "/work/work/incompat"))
        }
    }

    /// With the mount API the writes go to a private tmpfs attached nowhere: nothing on disk,
    /// nothing to remove. Without it the run falls back to the directories.
    /// A runtime that gives a scratch tmpfs to overlayfs only by `method` ("mount(2)": no mount
    /// API, so no scratch: the directories).
    func runtime(scratchBy method: String) throws -> ContainerRuntime {
        let methods: [ContainerSpec.Overlay.ScratchMethod] = method == "detached" ? [.detached] : [.privateNamespace]
        return try ContainerRuntime(cgroups: nil, networkNamespacePool: 0, seccompCache: nil, overlayMountAPI: method != "mount(2)",
                                    scratchMethods: methods, logger: Logger(label: "test"))
    }

    @Test(arguments: ["detached", "privateNamespace", "mount(2)"])
    func memoryScratchWritesNothingToDisk(method: String) throws {
        let mountAPI = method != "mount(2)"
        let runtime = try runtime(scratchBy: method)
        let tmp = try TempDirectory("propeller-overlay")
        defer { tmp.remove() }
        let lower = try Fixture.path()
        let lowerBefore = contents(lower)
        var root = stat()
        #expect(stat(lower, &root) == 0)
        try FileManager.default.createDirectory(atPath: tmp.path + "/root", withIntermediateDirectories: true)
        let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(out) }
        var spec = ContainerSpec(rootfs: tmp.path + "/root", command: ["sh", "-c", "echo made > /made && rm /etc/group && cat /made && stat -c %a:%u:%g /"])
        spec.overlay = ContainerSpec.Overlay(lower: [lower], upper: tmp.path + "/upper", work: tmp.path + "/work", scratch: .memory(sizeBytes: nil))
        spec.stdio = [-1, out, out]
        let container = try runtime.start(spec)
        let report = container.wait()
        #expect(report.exitCode == 0, "output: \(readFile(tmp.path + "/out") ?? "")")
        // "/" has the image's mode and owner, on either path.
        let mode = String(root.st_mode & 0o7777, radix: 8)
        #expect(readFile(tmp.path + "/out") == "made\n\(mode):\(root.st_uid):\(root.st_gid)\n")
        #expect(container.scratchInMemory == mountAPI)
        #expect(FileManager.default.fileExists(atPath: tmp.path + "/upper") == !mountAPI)
        #expect(FileManager.default.fileExists(atPath: tmp.path + "/work") == !mountAPI)
        #expect(FileManager.default.fileExists(atPath: lower + "/etc/group"))
        #expect(contents(lower) == lowerBefore)
        #expect(hostMounts(containing: tmp.path) == 0)
        #expect(contents(tmp.path + "/root") == [])
    }

    @Test(arguments: ["detached", "privateNamespace"])
    func theScratchSizeBoundsWhatAContainerWrites(method: String) throws {
        let runtime = try runtime(scratchBy: method)
        let tmp = try TempDirectory("propeller-overlay")
        defer { tmp.remove() }
        try FileManager.default.createDirectory(atPath: tmp.path + "/root", withIntermediateDirectories: true)
        let out = open(tmp.path + "/out", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(out) }
        // 1 MiB of scratch: 512 KiB fit, 4 MiB do not.
        var spec = ContainerSpec(rootfs: tmp.path + "/root", command: ["sh", "-c", "dd if=/dev/zero of=/small bs=64k count=8 2>/dev/null && echo small ok; dd if=/dev/zero of=/big bs=64k count=64"])
        spec.overlay = ContainerSpec.Overlay(lower: [try Fixture.path()], upper: tmp.path + "/upper", work: tmp.path + "/work", scratch: .memory(sizeBytes: 1 << 20))
        spec.stdio = [-1, out, out]
        let container = try runtime.start(spec)
        let report = container.wait()
        let output = readFile(tmp.path + "/out") ?? ""
        #expect(container.scratchInMemory)
        #expect(report.exitCode == 1, "output: \(output)")
        #expect(output.hasPrefix("small ok\n"), "\(output)")
        #expect(output.contains("No space left on device"), "\(output)")
    }

    @Test func theMemoryLimitBoundsScratchWritesToo() throws {
        let runtime = try ContainerRuntime()
        let tmp = try TempDirectory("propeller-overlay")
        defer { tmp.remove() }
        try FileManager.default.createDirectory(atPath: tmp.path + "/root", withIntermediateDirectories: true)
        // The tmpfs's pages are charged to the writer's memory cgroup: 64 MiB of files in a
        // 16 MiB container is an OOM kill, not host memory taken outside the limit.
        var spec = ContainerSpec(rootfs: tmp.path + "/root", command: ["dd", "if=/dev/zero", "of=/big", "bs=1M", "count=64"])
        spec.overlay = ContainerSpec.Overlay(lower: [try Fixture.path()], upper: tmp.path + "/upper", work: tmp.path + "/work", scratch: .memory(sizeBytes: nil))
        spec.limits.memoryBytes = 16 << 20
        spec.stdio = [-1, open("/dev/null", O_WRONLY | O_CLOEXEC), open("/dev/null", O_WRONLY | O_CLOEXEC)]
        defer { close(spec.stdio[1]); close(spec.stdio[2]) }
        let report = try runtime.start(spec).wait()
        #expect(report.oomKilled)
        #expect(report.exitCode == 137)
        #expect((report.usage.memoryPeakBytes ?? UInt64.max) <= 17 << 20)
    }

    @Test(arguments: [false, true])
    func aMissingLowerLayerIsAClearErrorAndLeavesNoCgroup(inMemory: Bool) throws {
        let runtime = try ContainerRuntime()
        let tmp = try TempDirectory("propeller-overlay")
        defer { tmp.remove() }
        try FileManager.default.createDirectory(atPath: tmp.path + "/root", withIntermediateDirectories: true)
        var spec = ContainerSpec(rootfs: tmp.path + "/root", command: ["true"])
        spec.overlay = ContainerSpec.Overlay(lower: [tmp.path + "/no-such-layer"], upper: tmp.path + "/upper", work: tmp.path + "/work",
                                             scratch: inMemory ? .memory(sizeBytes: nil) : .directories)
        // The user is resolved in the lower layer: give a numeric one so that the mount is
        // what fails.
        spec.user = "0:0"
        let error = #expect(throws: PropellerError.self) { try runtime.start(spec) }
        let message = error?.message ?? ""
        #expect(message.contains("mount overlay of \(tmp.path)/no-such-layer"), "\(message)")
        #expect(message.contains("lowerdir"), "\(message)")
        #expect(message.hasSuffix("ENOENT"), "\(message)")
        let layout = runtime.cgroups.layout
        for own in Set(layout.v1.values.map(\.ownDirectory) + [layout.unified?.ownDirectory].compactMap { $0 }) {
            #expect(!FileManager.default.fileExists(atPath: "\(own)/propeller/\(spec.id.hex)"))
        }
        #expect(hostMounts(containing: tmp.path) == 0)
    }
}
