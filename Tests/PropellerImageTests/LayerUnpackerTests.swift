import CFileSystem
import Foundation
import PropellerCore
@testable import PropellerImage
import PropellerTestSupport
import Testing

/// Hostile and ordinary layers, unpacked for real. Each hostile case keeps a sentinel directory
/// next to the rootfs and proves that nothing in it changed and nothing appeared outside.
@Suite("Layer unpacking")
struct LayerUnpackerTests {
    let tmp: TempDirectory
    let rootfs: String
    let outside: String
    let sentinel: String

    init() throws {
        tmp = try TempDirectory("propeller-unpack")
        rootfs = tmp.path + "/rootfs"
        outside = tmp.path + "/outside"
        sentinel = outside + "/sentinel"
        mkdirs(rootfs)
        mkdirs(outside)
        writeFile(sentinel, "untouched")
    }

    func layer(_ name: String = "layer", compression: TarBuilder.Compression = .gzip, _ build: (inout TarBuilder) -> Void) throws -> (String, Digest) {
        var b = TarBuilder()
        build(&b)
        let path = tmp.path + "/\(name).tar" + (compression == .gzip ? ".gz" : compression == .zstd ? ".zst" : "")
        let digest = try b.write(to: path, compression: compression)
        return (path, digest)
    }

    func unpack(_ path: String, options: LayerUnpacker.Options = LayerUnpacker.Options(), diffID: Digest? = nil) throws -> LayerUnpacker.Summary {
        try LayerUnpacker(options: options).unpack(layerAt: path, into: rootfs, layerName: "sha256:test", expectedDiffID: diffID)
    }

    /// Nothing outside the rootfs changed: the sentinel is intact and alone.
    func expectOutsideUntouched(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(readFile(sentinel) == "untouched", sourceLocation: sourceLocation)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: outside)) == ["sentinel"], sourceLocation: sourceLocation)
        // Only the rootfs, the sentinel directory and the layer files themselves are next to it.
        let top = (try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? []
        #expect(top.allSatisfy { ["rootfs", "outside"].contains($0) || $0.contains(".tar") }, "\(top)", sourceLocation: sourceLocation)
    }

    @Test(arguments: [TarBuilder.Compression.none, .gzip, .zstd])
    func ordinaryLayerWithMetadata(compression: TarBuilder.Compression) throws {
        defer { tmp.remove() }
        let (path, diffID) = try layer(compression: compression) { b in
            b.dir("etc")
            b.file("etc/hostname", "box\n", mode: 0o640, uid: 1000, gid: 50, xattrs: ["user.note": Data("hi".utf8)])
            b.file("usr/bin/tool", "#!/bin/sh\n", mode: 0o4755)  // parent dirs not listed
            b.symlink("bin", to: "usr/bin")
            b.hardlink("etc/hostname.link", to: "etc/hostname")
        }
        let summary = try unpack(path, diffID: diffID)
        #expect(summary.diffID == diffID)
        #expect(summary.entries == 5)
        #expect(readFile(rootfs + "/etc/hostname") == "box\n")
        let attrs = try FileManager.default.attributesOfItem(atPath: rootfs + "/etc/hostname")
        #expect(attrs[.posixPermissions] as? Int == 0o640)
        if isRoot {
            #expect(attrs[.ownerAccountID] as? Int == 1000)
            #expect(attrs[.groupOwnerAccountID] as? Int == 50)
        }
        #expect((attrs[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_700_000_000)
        var value = [UInt8](repeating: 0, count: 16)
        let n = pf_lgetxattr(rootfs + "/etc/hostname", "user.note", &value, 16)
        #expect(n == 2)
        // setuid is dropped for an untrusted image.
        let tool = try FileManager.default.attributesOfItem(atPath: rootfs + "/usr/bin/tool")
        #expect(tool[.posixPermissions] as? Int == 0o755)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: rootfs + "/bin") == "usr/bin")
        var a = stat(), b = stat()
        stat(rootfs + "/etc/hostname", &a)
        stat(rootfs + "/etc/hostname.link", &b)
        #expect(a.st_ino == b.st_ino)
    }

    @Test func trustedImagesKeepSetuid() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { $0.file("su", "x", mode: 0o4755) }
        var options = LayerUnpacker.Options()
        options.trustSpecialBits = true
        _ = try unpack(path, options: options)
        #expect(try FileManager.default.attributesOfItem(atPath: rootfs + "/su")[.posixPermissions] as? Int == 0o4755)
    }

    @Test func wrongDiffIDIsRefused() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { $0.file("a", "1") }
        let wrong = try Digest(validating: "sha256:" + String(repeating: "0", count: 64))
        let error = #expect(throws: PropellerError.self) { try unpack(path, diffID: wrong) }
        #expect(error?.message.contains("image config says") == true)
        #expect(error?.message.contains("sha256:test") == true)
    }

    // MARK: hostile layers

    @Test(arguments: ["../escaped", "a/../../escaped", "/abs-escaped", "./../escaped"])
    func traversalNamesAreRejected(name: String) throws {
        defer { tmp.remove() }
        let (path, _) = try layer { $0.file(name, "evil") }
        let error = #expect(throws: PropellerError.self) { try unpack(path) }
        #expect(error?.message.contains("sha256:test") == true)
        expectOutsideUntouched()
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/escaped"))
    }

    @Test func symlinkToTheHostThenAFileThroughItIsContained() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.dir("etc")
            b.symlink("root", to: "/")
            b.file("root/etc/through-root", "contained")
            b.symlink("up", to: "../../../../etc")  // climbs out, lands on the rootfs's /etc
            b.file("up/through-up", "contained")
        }
        _ = try unpack(path)
        expectOutsideUntouched()
        #expect(readFile(rootfs + "/etc/through-root") == "contained")
        #expect(readFile(rootfs + "/etc/through-up") == "contained")
        #expect(!FileManager.default.fileExists(atPath: "/etc/through-root"))
    }

    /// A symlink to a host path that does not exist inside the rootfs: the entry through it is
    /// refused (the parent cannot be resolved inside), and nothing on the host changes.
    @Test func symlinkToAHostDirectoryIsRejected() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.symlink("evil", to: outside)
            b.file("evil/sentinel", "pwned")
        }
        let error = #expect(throws: PropellerError.self) { try unpack(path) }
        #expect(error?.message.contains("evil/sentinel") == true)
        expectOutsideUntouched()
    }

    @Test func symlinkParentSwapIsContained() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.dir("a")
            b.file("a/x", "1")
            b.dir("tmp")
            b.symlink("a", to: "../../../tmp")  // replaces the directory, climbs out
            b.file("a/swapped", "inside")
            b.symlink("b", to: "../../outside")
            b.file("b/sentinel", "pwned")
        }
        #expect(throws: PropellerError.self) { try unpack(path) }  // b/sentinel cannot resolve inside
        expectOutsideUntouched()
        #expect(readFile(rootfs + "/tmp/swapped") == "inside")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: rootfs + "/a") == "../../../tmp")
    }

    @Test func hardlinkToAHostFileIsRejected() throws {
        defer { tmp.remove() }
        for target in ["/etc/shadow", "../outside/sentinel"] {
            let (path, _) = try layer { $0.hardlink("shadow", to: target) }
            #expect(throws: PropellerError.self) { try unpack(path) }
        }
        var st = stat()
        stat(sentinel, &st)
        #expect(st.st_nlink == 1)
        expectOutsideUntouched()
    }

    @Test func hardlinkThroughASymlinkStaysInside() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.symlink("s", to: outside)
            b.hardlink("h", to: "s/sentinel")
        }
        #expect(throws: PropellerError.self) { try unpack(path) }
        var st = stat()
        stat(sentinel, &st)
        #expect(st.st_nlink == 1)
        expectOutsideUntouched()
    }

    @Test(arguments: [".wh...", "d/.wh..", ".wh."])
    func whiteoutOfDotDotIsRejected(name: String) throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.dir("d")
            b.file(name)
        }
        #expect(throws: PropellerError.self) { try unpack(path) }
        expectOutsideUntouched()
    }

    @Test func opaqueWhiteoutOnASymlinkIsRejected() throws {
        defer { tmp.remove() }
        let (lower, _) = try layer("l1") { $0.symlink("d", to: outside) }
        _ = try unpack(lower)
        let (path, _) = try layer("l2") { $0.file("d/.wh..wh..opq") }
        #expect(throws: PropellerError.self) { try unpack(path) }
        expectOutsideUntouched()
    }

    @Test func devicesAndFifosAreSkipped() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.charDevice("dev/mem")
            b.fifo("fifo")
            b.file("ok", "1")
        }
        let summary = try unpack(path)
        #expect(summary.skipped.sorted() == ["dev/mem", "fifo"])
        #expect(!FileManager.default.fileExists(atPath: rootfs + "/dev/mem"))
        #expect(!FileManager.default.fileExists(atPath: rootfs + "/fifo"))
        #expect(readFile(rootfs + "/ok") == "1")
    }

    @Test func aZeroBombIsStoppedByTheSizeLimit() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { $0.file("zeros", bytes: Data(count: 32 << 20)) }
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0 < 1 << 20)
        var options = LayerUnpacker.Options()
        options.maxUnpackedBytes = 4 << 20
        let error = #expect(throws: PropellerError.self) { try unpack(path, options: options) }
        #expect(error?.code == .resourceExhausted)
    }

    @Test func truncatedGzipFailsWithTheLayerName() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.file("big", bytes: Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) }))
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: PropellerError.self) { try unpack(path) }
        #expect(error?.message.contains("sha256:test") == true)
    }

    @Test func garbageIsNotALayer() throws {
        defer { tmp.remove() }
        writeFile(tmp.path + "/garbage", String(repeating: "not a tar file ", count: 100))
        #expect(throws: PropellerError.self) { try unpack(tmp.path + "/garbage") }
    }

    @Test func duplicateEntriesLastOneWins() throws {
        defer { tmp.remove() }
        let (path, _) = try layer { b in
            b.file("dup", "first")
            b.file("dup", "second")
            b.dir("x")
            b.file("x/inner", "1")
            b.file("x", "now a file")
            b.file("y", "a file")
            b.dir("y")
        }
        _ = try unpack(path)
        #expect(readFile(rootfs + "/dup") == "second")
        #expect(readFile(rootfs + "/x") == "now a file")
        var isDir: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: rootfs + "/y", isDirectory: &isDir) && isDir.boolValue)
    }

    /// Whiteouts across three layers, with the opaque marker after its siblings in the tar.
    @Test func whiteoutsAcrossThreeLayers() throws {
        defer { tmp.remove() }
        let (l1, _) = try layer("l1") { b in
            b.file("a/1", "1")
            b.file("a/2", "2")
            b.file("a/sub/deep", "d")
            b.file("b/x", "x")
            b.file("b/y", "y")
            b.file("c", "c")
        }
        let (l2, _) = try layer("l2") { b in
            b.file("a/3", "3")           // same layer as the marker: stays
            b.file("a/.wh..wh..opq")     // hides 1, 2 and sub from layer 1
            b.file(".wh.c")
        }
        let (l3, _) = try layer("l3") { b in
            b.file("b/.wh.x")
            b.file("a/4", "4")
            b.file(".wh.never-existed")
        }
        for l in [l1, l2, l3] { _ = try unpack(l) }
        let fm = FileManager.default
        #expect(try fm.contentsOfDirectory(atPath: rootfs + "/a").sorted() == ["3", "4"])
        #expect(try fm.contentsOfDirectory(atPath: rootfs + "/b").sorted() == ["y"])
        #expect(!fm.fileExists(atPath: rootfs + "/c"))
        let all = fm.enumerator(atPath: rootfs)?.compactMap { $0 as? String } ?? []
        #expect(!all.contains { ($0 as NSString).lastPathComponent.hasPrefix(".wh.") })
    }
}
