import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// The parsers of what arrives from the broker and from people, fuzzed (see ``Fuzzer``).
@Suite("Fuzz: wire messages, chunks, references, sizes, durations")
struct FuzzCoreTests {
    @Test func blobChunkHeaders() throws {
        let digest = String(repeating: "ab", count: 32)
        let seeds = [BlobChunk.header(digestHex: digest, index: 1, total: 3, blobSize: 10, offset: 4, sha256: [UInt8](repeating: 7, count: 32)) + [1, 2, 3, 4],
                     BlobChunk.header(digestHex: digest, index: 0, total: 1, blobSize: 0, offset: 0, sha256: [UInt8](repeating: 0, count: 32))]
        Fuzzer.run("blob-chunk", seeds: seeds) { bytes in
            if let chunk = BlobChunk(parsing: bytes) {
                // What a proplet relies on once a chunk parsed.
                precondition(chunk.index < chunk.total && chunk.offset <= chunk.blobSize && UInt64(chunk.payload.count) <= chunk.blobSize - chunk.offset)
            }
        }
    }

    /// Every message type that arrives over the broker.
    static let wireTypes: [any (Decodable & Sendable).Type] = [StartTask.self, StopTask.self, TaskResult.self, TaskEvent.self, LogBlock.self, PropletHeartbeat.self,
                                                  PropletAnnouncement.self, RegistryRequest.self, RegistryResponse.self, WorkerCommand.self,
                                                  WorkerReport.self, ExecutionCommand.self, ExecutionReport.self]

    @Test func wireMessages() throws {
        let start = StartTask(taskId: "t1", attempt: 2, name: "n", image: "127.0.0.1:5000/app:v1", command: ["echo", "hi"], env: ["A": "b"],
                              workdir: "/w", user: "app", resources: Resources(cpuMillis: 500, memoryBytes: 64 << 20, pids: 10), timeoutSeconds: 5, network: "none")
        let seeds: [[UInt8]] = [
            try WireCoding.encode(start),
            try WireCoding.encode(StopTask(taskId: "t1", attempt: 2, signal: 15, graceSeconds: 10)),
            try WireCoding.encode(RegistryRequest(kind: .resend, requestId: "r", propletId: "p", image: "a/b", digest: "sha256:" + String(repeating: "0", count: 64), missing: [1, 2, 3])),
            try WireCoding.encode(RegistryResponse(requestId: "r", image: "a/b", manifestDigest: "sha256:00", manifest: "{}", blobs: [.init(digest: "sha256:00", size: 3)])),
            Array(#"{"proplet_id":"p","seq":3,"capacity":{"cpu_millis":1000,"memory_bytes":1,"pids":1,"tasks":1},"allocated":{"cpu_millis":0,"memory_bytes":0,"pids":0},"running":["t1"]}"#.utf8),
            Array(#"{"task_id":"t1","attempt":1,"proplet_id":"p","state":"completed","exit_code":0,"started_at":1.5,"finished_at":2.5}"#.utf8),
            Array(#"{"task_id":"t1","attempt":1,"proplet_id":"p","stream":"stdout","offset":0,"data":"aGk="}"#.utf8),
        ]
        Fuzzer.run("wire-messages", seeds: seeds) { bytes in
            for type in Self.wireTypes { _ = try? WireCoding.decode(type, from: bytes) }
            _ = JSONValue(parsing: bytes)
        }
    }

    @Test func textParsers() {
        let seeds = ["127.0.0.1:5000/app:v1", "docker.io/library/busybox@sha256:" + String(repeating: "a", count: 64), "[::1]:5000/x/y:z",
                     "64M", "1.5GiB", "1h30m", "500ms", "sha256:" + String(repeating: "0", count: 64), String(repeating: "f", count: 64)].map { Array($0.utf8) }
        Fuzzer.run("text-parsers", seeds: seeds) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? ImageReference(parsing: text)
            _ = try? ByteSize(parsing: text)
            _ = try? DurationParsing.parse(text)
            _ = try? Digest(validating: text)
            _ = try? ContainerID(validating: text)
            _ = ImageReference.isLoopbackHost(text)
        }
    }
}
