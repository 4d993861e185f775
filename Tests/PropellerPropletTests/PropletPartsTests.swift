import Foundation
import PropellerCore
@testable import PropellerProplet
import PropellerTestSupport
import Synchronization
import Testing

@Suite("Proplet parts")
struct PropletPartsTests {
    @Test func outputIsPublishedInOrderWithOffsetsAndTheTailIsCapped() throws {
        let pipes = try OutputCapture.pipes()
        let blocks = Mutex<[(LogBlock.Stream, UInt64, [UInt8])]>([])
        let capture = OutputCapture(stdoutRead: pipes.read[0], stderrRead: pipes.read[1], tailBytes: 10) { stream, offset, bytes in
            blocks.withLock { $0.append((stream, offset, bytes)) }
        }
        capture.start()
        var expected: [UInt8] = []
        for i in 0..<200 {
            let line = Array("line \(i)\n".utf8)
            expected += line
            _ = line.withUnsafeBytes { write(pipes.write[0], $0.baseAddress, $0.count) }
        }
        _ = "err".withCString { write(pipes.write[1], $0, 3) }
        close(pipes.write[0])
        close(pipes.write[1])
        let tails = capture.finish()
        #expect(tails.stdout == "\nline 199\n")
        #expect(tails.stderr == "err")
        let out = blocks.withLock { $0.filter { $0.0 == .stdout } }
        var offset: UInt64 = 0
        var joined: [UInt8] = []
        for (_, o, bytes) in out {
            #expect(o == offset)
            offset += UInt64(bytes.count)
            joined += bytes
        }
        #expect(joined == expected)
    }

    @Test func theOutboxKeepsResultsUntilAcknowledgedAcrossRestarts() throws {
        let dir = try TempDirectory("propeller-outbox")
        defer { dir.remove() }
        let r1 = TaskResult(taskId: "a", attempt: 1, propletId: "p", state: .completed, exitCode: 0, finishedAt: 1)
        let r2 = TaskResult(taskId: "b", attempt: 2, propletId: "p", state: .failed, exitCode: 3, finishedAt: 2)
        do {
            let outbox = try ResultOutbox(directory: dir.path)
            try outbox.add(r1)
            try outbox.add(r2)
            outbox.remove(r1.ref)
            outbox.flush()
        }
        writeFile(dir.path + "/garbage.json", "{not json")
        let reopened = try ResultOutbox(directory: dir.path)
        #expect(reopened.pending() == [r2])
        #expect(reopened.contains(r2.ref) && !reopened.contains(r1.ref))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/garbage.json"))
    }

    @Test func thePropletIDIsMadeOnceAndKept() throws {
        let dir = try TempDirectory("propeller-id")
        defer { dir.remove() }
        let first = try PropletOptions.persistentID(dataDirectory: dir.path)
        #expect(Topics.isValidComponent(first))
        #expect(try PropletOptions.persistentID(dataDirectory: dir.path) == first)
    }

    @Test func detectedCapacityIsThisMachines() {
        let c = PropletOptions.detectedCapacity()
        #expect(c.cpuMillis == UInt64(ProcessInfo.processInfo.activeProcessorCount) * 1000)
        #expect(c.memoryBytes > 0 && abs(Double(c.memoryBytes) - Double(ProcessInfo.processInfo.physicalMemory)) < 1e8)
        #expect(c.pids > 0 && c.tasks == 32)
    }
}

@Suite("Proplet volumes")
struct PropletVolumesTests {
    @Test func namedVolumesAreListedWithTheirSizesAndRemoved() throws {
        let dir = try TempDirectory("propeller-volumes")
        defer { dir.remove() }
        let volumes = PropletVolumes(host: ["input": .init(path: "/tmp", readOnly: true)], namedRoot: dir.path + "/volumes")
        let path = try volumes.named("cache", owner: .root)
        writeFile(path + "/a", "12345")
        mkdirs(path + "/sub")
        writeFile(path + "/sub/b", "123")
        symlink("/etc/passwd", path + "/link")
        _ = try volumes.named("empty", owner: .root)
        #expect(volumes.named(using: ["cache", "cache", "input"]) == [NamedVolumeInfo(name: "cache", sizeBytes: 8, inUse: 2), NamedVolumeInfo(name: "empty", sizeBytes: 0, inUse: 0)])
        try volumes.remove("cache")
        #expect(volumes.named(using: []).map(\.name) == ["empty"])
        #expect(FileManager.default.fileExists(atPath: "/etc/passwd"), "a symlink inside is removed, not followed")
        #expect(throws: PropellerError.self) { try volumes.remove("cache") }
        #expect(throws: PropellerError.self) { try volumes.remove("../etc") }
    }
}
