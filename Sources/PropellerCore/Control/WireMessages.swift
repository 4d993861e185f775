#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// JSON as every component speaks it: snake_case keys, ISO-free numeric times (seconds since the
/// epoch as a Double), sorted keys so equal messages are equal bytes.
public enum WireCoding {
    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }

    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try encoder().encode(value))
    }

    /// Decodes `bytes` as `T`, with an error that says which message and which field was wrong.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        do {
            return try decoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw PropellerError(.invalidArgument, "malformed \(T.self): \(describe(error))")
        }
    }

    /// One line for a decoding error: the JSON path and what was wrong there.
    public static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            var p = ""
            for key in keys {
                if let i = key.intValue {
                    p += "[\(i)]"
                } else {
                    p += (p.isEmpty ? "" : ".") + snakeCase(key.stringValue)
                }
            }
            return p.isEmpty ? "the document" : p
        }
        switch error {
        case .typeMismatch(let type, let c): return "\(path(c.codingPath)): expected \(jsonTypeName(type))"
        case .valueNotFound(let type, let c): return "\(path(c.codingPath)): expected \(jsonTypeName(type)), found null"
        case .keyNotFound(let key, let c): return "\(path(c.codingPath + [key])): required field missing"
        case .dataCorrupted(let c):
            if c.codingPath.isEmpty { return "not valid JSON" }
            return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    static func jsonTypeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int64.Type, is UInt64.Type, is Int32.Type, is UInt32.Type: return "a whole number"
        case is Double.Type: return "a number"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "an object"
        }
    }

    /// `cpuMillis` → `cpu_millis`, as the key strategy writes it.
    public static func snakeCase(_ key: String) -> String {
        // Property names start lowercase; dictionary keys ("PATH" in env) stay as they are.
        guard key.first?.isLowercase == true else { return key }
        var out = ""
        for ch in key {
            if ch.isUppercase {
                if !out.isEmpty { out.append("_") }
                out.append(contentsOf: ch.lowercased())
            } else {
                out.append(ch)
            }
        }
        return out
    }
}

/// A task run is named by its task id and attempt; every message about it carries both, so
/// duplicates (QoS 1 redelivery, resends) are recognised and harmless.
public struct TaskAttempt: Codable, Sendable, Hashable {
    public var taskId: String
    public var attempt: Int

    public init(taskId: String, attempt: Int) {
        self.taskId = taskId
        self.attempt = attempt
    }
}

/// `control/proplet/create` and the identifying part of every heartbeat.
public struct PropletAnnouncement: Codable, Sendable, Hashable {
    public var propletId: String
    public var name: String
    public var version: String
    public var labels: [String: String]
    public var capacity: Capacity
    public var os: String
    public var arch: String
    public var cgroupMode: String
    /// The host volumes its operator offers (absent: none, or an older proplet).
    public var hostVolumes: [HostVolume]?
    /// The CNI networks it can attach tasks to: `bridge` and its operator's (absent: none).
    public var networks: [String]?
    /// The only namespaces whose tasks and actor workers it takes (absent: every namespace).
    public var namespaces: [String]?

    public init(propletId: String, name: String, version: String, labels: [String: String], capacity: Capacity, os: String, arch: String, cgroupMode: String,
                hostVolumes: [HostVolume]? = nil, networks: [String]? = nil, namespaces: [String]? = nil) {
        self.hostVolumes = hostVolumes
        self.networks = networks
        self.namespaces = namespaces
        self.propletId = propletId
        self.name = name
        self.version = version
        self.labels = labels
        self.capacity = capacity
        self.os = os
        self.arch = arch
        self.cgroupMode = cgroupMode
    }
}

/// `control/proplet/alive`: a heartbeat, or (status `offline`) the Last Will or a clean goodbye.
public struct PropletHeartbeat: Codable, Sendable, Hashable {
    public enum Status: String, Codable, Sendable { case online, draining, offline }
    public var propletId: String
    public var status: Status
    public var seq: UInt64
    /// Present on heartbeats (absent on the Last Will), so a manager that missed the announcement
    /// (it restarted, the broker dropped it) still learns the proplet.
    public var announcement: PropletAnnouncement?
    /// What the proplet's running tasks reserve.
    public var allocated: Resources?
    /// Tasks it runs now (pulling included).
    public var running: [TaskAttempt]?
    /// Tasks that ended whose result the manager has not acknowledged yet.
    public var finished: [TaskAttempt]?
    /// The actor workers it keeps warm.
    public var workers: [WorkerBeat]?
    /// Set while the proplet holds starts until the manager confirms its placement epoch (after
    /// it started, reconnected, or found itself paused): the manager answers with
    /// ``PropletEpoch``.
    public var awaitingEpoch: Bool?
    /// Starts it holds until then: not running (they may be withdrawn), not lost either.
    public var held: [TaskAttempt]?
    /// Its named volumes (absent: none, or an older proplet).
    public var volumes: [NamedVolumeInfo]?

    public init(propletId: String, status: Status, seq: UInt64 = 0, announcement: PropletAnnouncement? = nil, allocated: Resources? = nil,
                running: [TaskAttempt]? = nil, finished: [TaskAttempt]? = nil, workers: [WorkerBeat]? = nil, awaitingEpoch: Bool? = nil,
                held: [TaskAttempt]? = nil, volumes: [NamedVolumeInfo]? = nil) {
        self.volumes = volumes
        self.propletId = propletId
        self.status = status
        self.seq = seq
        self.announcement = announcement
        self.allocated = allocated
        self.running = running
        self.finished = finished
        self.workers = workers
        self.awaitingEpoch = awaitingEpoch
        self.held = held
    }
}

/// `control/proplet/{id}/start`: everything the proplet needs to run one attempt of a task.
public struct StartTask: Codable, Sendable, Hashable {
    public var taskId: String
    public var attempt: Int
    public var name: String
    public var image: String
    /// Replaces the image's Cmd (its Entrypoint stays), like `docker run IMAGE CMD...`.
    public var command: [String]?
    public var env: [String: String]
    public var workdir: String?
    public var user: String?
    public var resources: Resources
    public var timeoutSeconds: Double?
    /// `none` (loopback only), `host`, `bridge` or a network the proplet's operator defined.
    public var network: String
    /// Ports published on the proplet's host (host ports chosen by the manager), for a CNI network.
    public var publish: [PortMapping]?
    /// The proplet's placement epoch when the manager placed this attempt. The manager raises a
    /// proplet's epoch each time it gives the proplet up (and fails or moves its work), so a
    /// start still queued for it from before is older than the epoch the manager confirms when
    /// the proplet is back, and is dropped (``PropletEpoch``). Absent from older managers.
    public var epoch: UInt64?
    /// Host and named volumes, in order (absent: none).
    public var volumes: [VolumeMount]?
    /// New tmpfs mounts (absent: none).
    public var tmpfs: [TmpfsMount]?
    /// Secrets the task asks for (absent: none), and their values, added by the manager as the
    /// start leaves for this proplet's own topic (never kept with the task).
    public var secrets: [SecretMount]?
    public var secretValues: [SecretValue]?
    /// Files fetched before the task starts (absent: none).
    public var artifacts: [ArtifactSpec]?
    /// A directory of the task kept after it ends (`--output`; absent: none).
    public var output: String?
    /// The W3C trace context (`traceparent`) of the manager's span that sent this start: the
    /// proplet's spans of the attempt go under it (nil: not traced).
    public var trace: [String: String]?

    public init(taskId: String, attempt: Int, name: String, image: String, command: [String]?, env: [String: String], workdir: String?, user: String?,
                resources: Resources, timeoutSeconds: Double?, network: String, epoch: UInt64? = nil, volumes: [VolumeMount]? = nil,
                tmpfs: [TmpfsMount]? = nil, secrets: [SecretMount]? = nil, publish: [PortMapping]? = nil,
                artifacts: [ArtifactSpec]? = nil, output: String? = nil) {
        self.artifacts = artifacts
        self.output = output
        self.secrets = secrets
        self.publish = publish
        self.volumes = volumes
        self.tmpfs = tmpfs
        self.taskId = taskId
        self.attempt = attempt
        self.name = name
        self.image = image
        self.command = command
        self.env = env
        self.workdir = workdir
        self.user = user
        self.resources = resources
        self.timeoutSeconds = timeoutSeconds
        self.network = network
        self.epoch = epoch
    }

    public var ref: TaskAttempt { TaskAttempt(taskId: taskId, attempt: attempt) }
}

/// `control/proplet/{id}/stop`.
public struct StopTask: Codable, Sendable, Hashable {
    public var taskId: String
    public var attempt: Int
    public var signal: Int32
    public var graceSeconds: Double

    public init(taskId: String, attempt: Int, signal: Int32 = 15, graceSeconds: Double = 10) {
        self.taskId = taskId
        self.attempt = attempt
        self.signal = signal
        self.graceSeconds = graceSeconds
    }
}

/// `control/proplet/{id}/ack` (beside result acknowledgements, told apart by their fields): the
/// manager's answer to a heartbeat with `awaiting_epoch`, the proplet's current placement epoch.
/// Starts of an older epoch were withdrawn (the manager gave the proplet up and failed or moved
/// their tasks); the proplet drops them.
public struct PropletEpoch: Codable, Sendable, Hashable {
    public var propletId: String
    public var epoch: UInt64

    public init(propletId: String, epoch: UInt64) {
        self.propletId = propletId
        self.epoch = epoch
    }
}

/// `control/proplet/{id}/ack`: the manager stored this result.
public typealias ResultAck = TaskAttempt

/// CPU and memory a task used, from its cgroup.
public struct TaskUsage: Codable, Sendable, Hashable {
    public var cpuUsec: UInt64?
    public var memoryPeakBytes: UInt64?

    public init(cpuUsec: UInt64? = nil, memoryPeakBytes: UInt64? = nil) {
        self.cpuUsec = cpuUsec
        self.memoryPeakBytes = memoryPeakBytes
    }
}

/// `control/proplet/results`: how one attempt ended.
public struct TaskResult: Codable, Sendable, Hashable {
    public var taskId: String
    public var attempt: Int
    public var propletId: String
    /// `completed` (exit 0), `failed` (non-zero exit, signal, OOM, timeout, setup error) or `stopped`.
    public var state: TaskState
    public var exitCode: Int32?
    public var signal: Int32?
    public var oomKilled: Bool
    public var timedOut: Bool
    public var error: String?
    public var startedAt: Double?
    public var finishedAt: Double?
    public var usage: TaskUsage
    public var stdoutTail: String
    public var stderrTail: String
    /// What its `--output` directory held (absent: it had none).
    public var outputs: OutputSummary?
    /// The trace context of the proplet's span of the attempt (nil: not traced).
    public var trace: [String: String]?

    public init(taskId: String, attempt: Int, propletId: String, state: TaskState, exitCode: Int32? = nil, signal: Int32? = nil, oomKilled: Bool = false,
                timedOut: Bool = false, error: String? = nil, startedAt: Double? = nil, finishedAt: Double? = nil, usage: TaskUsage = TaskUsage(),
                stdoutTail: String = "", stderrTail: String = "") {
        self.taskId = taskId
        self.attempt = attempt
        self.propletId = propletId
        self.state = state
        self.exitCode = exitCode
        self.signal = signal
        self.oomKilled = oomKilled
        self.timedOut = timedOut
        self.error = error
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.usage = usage
        self.stdoutTail = stdoutTail
        self.stderrTail = stderrTail
    }

    public var ref: TaskAttempt { TaskAttempt(taskId: taskId, attempt: attempt) }
}

/// `control/proplet/events`: a phase change of one attempt.
public struct TaskEvent: Codable, Sendable, Hashable {
    public enum Phase: String, Codable, Sendable { case accepted, pulling, unpacking, running }
    public var taskId: String
    public var attempt: Int
    public var propletId: String
    public var phase: Phase
    public var at: Double
    /// While pulling: bytes received so far of those the proplet lacked (sent about once a second).
    public var pull: PullReport?

    public init(taskId: String, attempt: Int, propletId: String, phase: Phase, at: Double) {
        self.taskId = taskId
        self.attempt = attempt
        self.propletId = propletId
        self.phase = phase
        self.at = at
    }
}

/// How far a pull has come: bytes received of those to receive.
public struct PullReport: Codable, Sendable, Hashable {
    public var receivedBytes: UInt64
    public var totalBytes: UInt64

    public init(receivedBytes: UInt64, totalBytes: UInt64) {
        self.receivedBytes = receivedBytes
        self.totalBytes = totalBytes
    }
}

/// `tasks/{id}/logs`: a block of output. `offset` counts bytes of that stream before this block,
/// so a subscriber notices gaps and duplicates.
public struct LogBlock: Codable, Sendable, Hashable {
    public enum Stream: String, Codable, Sendable { case stdout, stderr }
    public var taskId: String
    public var attempt: Int
    public var stream: Stream
    public var offset: UInt64
    public var data: String

    public init(taskId: String, attempt: Int, stream: Stream, offset: UInt64, data: String) {
        self.taskId = taskId
        self.attempt = attempt
        self.stream = stream
        self.offset = offset
        self.data = data
    }
}

/// A message a proplet sends about itself: its `proplet_id` must be the sender's.
public protocol PropletMessage {
    var propletId: String { get }
}

extension PropletAnnouncement: PropletMessage {}
extension PropletHeartbeat: PropletMessage {}
extension TaskResult: PropletMessage {}
extension TaskEvent: PropletMessage {}
