import Foundation
import PropellerCore
import PropellerImage
import PropellerTestSupport
import Testing

struct RunDirectoryTests {
    func contents(_ path: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    @Test func anOverlayRunLeavesOnlyTheSharedMountPoint() throws {
        let data = try TempDirectory("propeller-runs")
        defer { data.remove() }
        let id = ContainerID()
        let run = try RunDirectory.create(dataDirectory: data.path, id: id, overlay: true)
        #expect(run.merged == data.path + "/runs/.rootfs")
        #expect(contents(data.path + "/runs") == [".rootfs", id.hex, id.hex + ".work"])
        // What a container and overlayfs leave: files in the upper layer (a symlink to a host
        // path among them, removed, not followed), the volatile marker and a stray work file.
        let sentinel = data.path + "/sentinel"
        _ = FileManager.default.createFile(atPath: sentinel, contents: Data("keep".utf8))
        try FileManager.default.createDirectory(atPath: run.upper + "/etc/deep", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: run.upper + "/etc/deep/file", contents: Data("x".utf8))
        try FileManager.default.createSymbolicLink(atPath: run.upper + "/escape", withDestinationPath: data.path)
        try FileManager.default.createDirectory(atPath: run.work + "/work/incompat/volatile", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: run.work + "/work/incompat/volatile/dirty", contents: nil)
        _ = FileManager.default.createFile(atPath: run.work + "/work/#1234", contents: nil)
        run.remove()
        #expect(contents(data.path + "/runs") == [".rootfs"])
        #expect(FileManager.default.fileExists(atPath: sentinel))
    }

    @Test func theRuntimeCanMakeTheLayers() throws {
        let data = try TempDirectory("propeller-runs")
        defer { data.remove() }
        let id = ContainerID()
        // layers: false makes only what runs share; the runtime makes <id> and <id>.work.
        let run = try RunDirectory.create(dataDirectory: data.path, id: id, overlay: true, layers: false)
        #expect(contents(data.path + "/runs") == [".rootfs"])
        #expect(run.upper == data.path + "/runs/" + id.hex)
        try FileManager.default.createDirectory(atPath: run.upper, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: run.work + "/work", withIntermediateDirectories: true)
        run.remove()
        #expect(contents(data.path + "/runs") == [".rootfs"])
    }

    @Test func withoutOverlayTheRunIsACopyTarget() throws {
        let data = try TempDirectory("propeller-runs")
        defer { data.remove() }
        let run = try RunDirectory.create(dataDirectory: data.path, id: ContainerID(), overlay: false)
        #expect(run.merged == run.path)
        _ = FileManager.default.createFile(atPath: run.merged + "/copied", contents: nil)
        run.remove()
        #expect(contents(data.path + "/runs") == [])
    }

    @Test func theVolatileMarkerCanGoEarly() throws {
        let data = try TempDirectory("propeller-runs")
        defer { data.remove() }
        let run = try RunDirectory.create(dataDirectory: data.path, id: ContainerID(), overlay: true)
        try FileManager.default.createDirectory(atPath: run.work + "/work/incompat/volatile", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: run.work + "/work/incompat/volatile/dirty", contents: nil)
        run.dropVolatileMarker()
        #expect(contents(run.work + "/work") == [])
        run.dropVolatileMarker()
        run.remove()
        #expect(contents(data.path + "/runs") == [".rootfs"])
    }
}
