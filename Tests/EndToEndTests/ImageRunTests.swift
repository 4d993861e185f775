import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// A two-layer OCI image layout built with umoci from the fixture rootfs: layer 2 deletes
/// /bin/wc (a whiteout) and adds /etc/motd; the config sets Cmd, Env, WorkingDir and User.
enum ImageFixture {
    static let layout: Result<String, PropellerError> = {
        do {
            let dir = try TempDirectory("propeller-oci").path
            let rootfs = try Fixture.buildPristine(into: dir)
            let script = """
            set -e
            cd '\(dir)'
            umoci init --layout oci
            umoci new --image oci:app
            umoci unpack --image oci:app bundle >/dev/null
            cp -a '\(rootfs)'/. bundle/rootfs/
            umoci repack --image oci:app bundle
            rm -rf bundle '\(rootfs)'
            umoci unpack --image oci:app bundle >/dev/null
            rm bundle/rootfs/bin/wc
            echo 'layer two' > bundle/rootfs/etc/motd
            umoci repack --image oci:app bundle
            rm -rf bundle
            umoci config --image oci:app --config.cmd /bin/sh --config.cmd -c \
                --config.cmd 'echo hi from $(cat /etc/motd) in $(pwd) as $(id -un) with $GREETING' \
                --clear=config.entrypoint --config.workingdir /home/app --config.user app \
                --config.env GREETING=hello --architecture amd64 --os linux
            """
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", script]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw PropellerError(.internalError, "building the OCI layout failed") }
            atexit { if case .success(let d) = ImageFixture.layout { try? FileManager.default.removeItem(atPath: (d as NSString).deletingLastPathComponent) } }
            return .success(dir + "/oci")
        } catch let error as PropellerError {
            return .failure(error)
        } catch {
            return .failure(PropellerError(.internalError, "\(error)"))
        }
    }()
}

/// What an image test needs: the fixture layout and a fresh data directory.
final class ImageTestContext: Sendable {
    let layout: String
    let data: TempDirectory

    init() throws {
        layout = try ImageFixture.layout.get()
        data = try TempDirectory("propeller-data")
    }

    deinit { data.remove() }  // the test (or the suite instance holding this) is done

    /// A running docker-registry (Basic auth when credentials are given) holding the fixture
    /// image under `name`.
    func registry(holding name: String, credentials: (String, String)? = nil, tokenAuth: String? = nil) throws -> RegistryServer {
        let registry = try RegistryServer(username: credentials?.0, password: credentials?.1, tokenAuth: tokenAuth)
        do {
            try registry.push(layout: layout, tag: "app", as: name, credentials: credentials)
        } catch {
            registry.stop()
            throw error
        }
        return registry
    }
}

@Suite("propeller run --image", .enabled(if: isRoot, "requires root: umoci unpack, namespaces and overlayfs"))
struct ImageRunTests {
    let context: ImageTestContext
    var layout: String { context.layout }
    var data: TempDirectory { context.data }

    init() throws { context = try ImageTestContext() }

    func run(_ args: [String], image: String? = nil) throws -> CLIResult {
        try propeller(["run", "--data-dir", data.path, "--image", image ?? "oci:\(layout):app"] + args)
    }

    @Test func imageConfigIsApplied() throws {
        defer { data.remove() }
        let r = try run([])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText == "hi from layer two in /home/app as app with hello\n")
    }

    /// `propeller-run`, the small binary of the run path, runs an image as `propeller run` does:
    /// the same output and exit status, the same usage errors (exit 125) in its own name.
    @Test func theSmallRunBinaryBehavesAsPropellerRun() throws {
        defer { data.remove() }
        let image = ["--data-dir", data.path, "--image", "oci:\(layout):app"]
        let r = try propeller(image, binary: propellerRunBinary)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText == "hi from layer two in /home/app as app with hello\n")
        #expect(try propeller(image + ["--", "sh", "-c", "exit 7"], binary: propellerRunBinary).status == 7)
        let usage = try propeller(["--memory", "lots", "--rootfs", "/", "true"], binary: propellerRunBinary)
        #expect(usage.status == 125 && usage.stderrText.hasPrefix("propeller-run: "), "\(usage.status): \(usage.stderrText)")
        let big = try propeller(["run", "--memory", "lots", "--rootfs", "/", "true"])
        #expect(big.status == 125 && big.stderrText.hasPrefix("propeller: "), "\(big.status): \(big.stderrText)")
    }

    /// `-v /host:/path[:ro]` and `--tmpfs`, as podman takes them: read, written, refused.
    @Test func volumesAndTmpfsAsPodmanTakesThem() throws {
        defer { data.remove() }
        let dir = try TempDirectory("propeller-run-volume")
        defer { dir.remove() }
        writeFile(dir.path + "/in", "from the host\n")
        mkdirs(dir.path + "/out")
        let r = try run(["--user", "0", "-v", dir.path + "/in:/data/in:ro", "--volume", dir.path + "/out:/out", "--tmpfs", "/scratch:size=1M", "--",
                         "sh", "-c", "cat /data/in; echo ok > /out/r; echo no > /data/in || echo read-only; dd if=/dev/zero of=/scratch/z bs=64k count=32 2>/dev/null || echo full"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText == "from the host\nread-only\nfull\n", "\(r.stdoutText) \(r.stderrText)")
        #expect(readFile(dir.path + "/out/r") == "ok\n")
        let bad = try run(["-v", "relative:/x", "--", "true"])
        #expect(bad.status == 125 && bad.stderrText.contains("--volume"), "\(bad.stderrText)")
        let proc = try run(["-v", dir.path + "/out:/proc/x", "--", "true"])
        #expect(proc.status == 125 && proc.stderrText.contains("/proc"), "\(proc.stderrText)")
    }

    @Test func argumentsReplaceCmdAndFlagsWin() throws {
        defer { data.remove() }
        let r = try run(["--user", "0", "-w", "/tmp", "-e", "GREETING=flag", "--", "sh", "-c", "echo $(id -u) $(pwd) $GREETING; ls /bin/wc"])
        #expect(r.stdoutText == "0 /tmp flag\n")
        #expect(r.stderrText.contains("No such file"), "the whiteout in layer 2 removed /bin/wc")
    }

    @Test(arguments: ["memory", "disk"])
    func runsCannotChangeEachOtherOrTheCache(scratch: String) throws {
        defer { data.remove() }
        let first = try run(["--scratch", scratch, "--user", "0", "--", "sh", "-c", "echo changed > /etc/motd; rm /bin/sh.x 2>/dev/null; cat /etc/motd"])
        #expect(first.stdoutText == "changed\n")
        let second = try run(["--scratch", scratch, "--", "cat", "/etc/motd"])
        #expect(second.stdoutText == "layer two\n")
        // Nothing of either run is left (the shared mount point stays, empty), and the image was
        // unpacked once.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.path + "/runs")) ?? [] == [".rootfs"])
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.path + "/runs/.rootfs")) == [])
        let images = try FileManager.default.contentsOfDirectory(atPath: data.path + "/images").filter { !$0.hasSuffix(".lock") }
        #expect(images.count == 1)
    }

    @Test func theScratchSizeIsEnforcedAndDiskScratchHasNone() throws {
        defer { data.remove() }
        let write = ["--user", "0", "--", "dd", "if=/dev/zero", "of=/big", "bs=64k", "count=64"]
        let small = try run(["--scratch-size", "1M"] + write)
        #expect(small.status == 1)
        #expect(small.stderrText.contains("No space left on device"), "\(small.stderrText)")
        let disk = try run(["--scratch", "disk"] + write)
        #expect(disk.status == 0, "\(disk.stderrText)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.path + "/runs")) ?? [] == [".rootfs"])
        let wrong = try run(["--scratch", "disk", "--scratch-size", "1M", "--", "true"])
        #expect(wrong.status == 125)
        #expect(wrong.stderrText.contains("--scratch-size needs --scratch memory"), "\(wrong.stderrText)")
        let bad = try run(["--scratch-size", "lots", "--", "true"])
        #expect(bad.status == 125)
        #expect(bad.stderrText.contains("invalid --scratch-size \"lots\""), "\(bad.stderrText)")
    }

    @Test func concurrentRunsUnpackOnce() throws {
        defer { data.remove() }
        let group = DispatchGroup()
        nonisolated(unsafe) var statuses: [Int32] = []
        let lock = NSLock()
        let args = ["run", "--data-dir", data.path, "--image", "oci:\(layout):app", "--", "cat", "/etc/motd"]
        for _ in 0..<3 {
            group.enter()
            DispatchQueue.global().async {
                let s = (try? propeller(args).status) ?? -1
                lock.lock(); statuses.append(s); lock.unlock()
                group.leave()
            }
        }
        group.wait()
        #expect(statuses == [0, 0, 0])
        let entries = try FileManager.default.contentsOfDirectory(atPath: data.path + "/images")
        #expect(entries.filter { !$0.hasSuffix(".lock") }.count == 1, "\(entries)")
        #expect(!entries.contains { $0.hasPrefix(".unpack-") })
    }

    @Test func unknownTagAndMissingLayoutAreClearErrors() throws {
        defer { data.remove() }
        let tag = try run([], image: "oci:\(layout):nope")
        #expect(tag.status == 125)
        #expect(tag.stderrText.contains("no image tagged \"nope\""))
        let missing = try run([], image: "oci:/nonexistent/layout:app")
        #expect(missing.status == 125)
        #expect(missing.stderrText.contains("not an OCI image layout"))
        let registry = try run([], image: "127.0.0.1:5000/app:latest")
        #expect(registry.status == 125)
    }

    @Test func aCorruptedBlobIsRefusedAndNotCached() throws {
        defer { data.remove() }
        // Copy the layout and flip bytes in its largest blob (a layer).
        let copy = data.path + "/layout"
        try FileManager.default.copyItem(atPath: layout, toPath: copy)
        let blobs = copy + "/blobs/sha256"
        let largest = try FileManager.default.contentsOfDirectory(atPath: blobs).max { a, b in
            ((try? FileManager.default.attributesOfItem(atPath: blobs + "/" + a)[.size] as? Int) ?? 0)
                < ((try? FileManager.default.attributesOfItem(atPath: blobs + "/" + b)[.size] as? Int) ?? 0)
        }
        let victim = blobs + "/" + (largest ?? "")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
        bytes[bytes.count / 2] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: victim))
        let r = try run([], image: "oci:\(copy):app")
        #expect(r.status == 125)
        #expect(r.stderrText.contains("digest mismatch"), "\(r.stderrText)")
        #expect(!FileManager.default.fileExists(atPath: data.path + "/content/blobs/sha256/" + (largest ?? "x")))
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.path + "/content/ingest")) == [])
    }
}
