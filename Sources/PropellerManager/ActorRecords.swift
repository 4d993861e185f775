import Foundation
import PropellerCore

/// What a user registers: an image and the defaults each execution gets.
public struct ActorSpec: Codable, Sendable, Hashable {
    public var name: String
    public var image: String
    public var description: String
    /// Replaces the image's Cmd (its Entrypoint stays).
    public var command: [String]?
    public var defaultEnv: [String: String]
    /// Reserved per worker (memory defaults as for tasks).
    public var resources: Resources
    /// Workers kept even when idle (0: scale to zero).
    public var minWorkers: Int
    public var maxWorkers: Int
    /// false: one worker at most, and a JSON state handed to each execution.
    public var stateless: Bool
    public var labels: [String: String]
    /// Proplet labels a worker's proplet must have.
    public var constraints: [String: String]
    /// An execution running longer is killed.
    public var timeoutSeconds: Double?
    /// Volumes, tmpfs mounts and secrets every execution gets, as a task's (nil: none).
    public var volumes: [VolumeMount]?
    public var tmpfs: [TmpfsMount]?
    public var secrets: [SecretMount]?
    /// Every execution's network: none (nil), host, bridge or a network a proplet offers.
    public var network: String?
    /// The namespace it belongs to (nil: `default`); set by the API from the request's
    /// namespace, never from the body.
    public var namespace: String?
    /// Each execution gets its own API token of this role (``TaskIdentity``), bound to the
    /// actor's namespace, as `/run/secrets/propeller-api-token` (nil: none).
    public var apiTokenRole: Role?

    public init(name: String, image: String, description: String = "", command: [String]? = nil, defaultEnv: [String: String] = [:],
                resources: Resources = .zero, minWorkers: Int = 1, maxWorkers: Int = 1, stateless: Bool = true, labels: [String: String] = [:],
                constraints: [String: String] = [:], timeoutSeconds: Double? = nil) {
        self.name = name
        self.image = image
        self.description = description
        self.command = command
        self.defaultEnv = defaultEnv
        self.resources = resources
        self.minWorkers = minWorkers
        self.maxWorkers = maxWorkers
        self.stateless = stateless
        self.labels = labels
        self.constraints = constraints
        self.timeoutSeconds = timeoutSeconds
    }

    /// Whether a change to this spec needs new workers (what a worker was prepared with).
    func needsNewWorkers(comparedTo old: ActorSpec) -> Bool {
        image != old.image || command != old.command || defaultEnv != old.defaultEnv || resources != old.resources
            || constraints != old.constraints || timeoutSeconds != old.timeoutSeconds || volumes != old.volumes || tmpfs != old.tmpfs
            || secrets != old.secrets || network != old.network
    }
}

public enum ActorStatus: String, Codable, Sendable, CaseIterable {
    /// Registered; no worker is warm yet.
    case submitted
    /// At least one worker is warm.
    case ready
    /// Its image could not be made ready (the message says why); a PUT with a new image retries.
    case error
}

public struct ActorRecord: Codable, Sendable, Hashable {
    public var id: String
    public var spec: ActorSpec
    public var status: ActorStatus
    /// Why the actor is in error, or waiting.
    public var message: String?
    /// Bumped by every change that replaces the workers.
    public var revision: Int
    public var createdAt: Double
    public var updatedAt: Double

    enum Keys: String, CodingKey { case id, status, message, revision, createdAt, updatedAt }

    public init(id: String, spec: ActorSpec, status: ActorStatus = .submitted, message: String? = nil, revision: Int = 1, createdAt: Double, updatedAt: Double) {
        self.id = id
        self.spec = spec
        self.status = status
        self.message = message
        self.revision = revision
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Flat JSON: the spec's fields beside the status fields.
    public func encode(to encoder: any Encoder) throws {
        try spec.encode(to: encoder)
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(id, forKey: .id)
        try c.encode(status, forKey: .status)
        try c.encodeIfPresent(message, forKey: .message)
        try c.encode(revision, forKey: .revision)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
    }

    public init(from decoder: any Decoder) throws {
        spec = try ActorSpec(from: decoder)
        let c = try decoder.container(keyedBy: Keys.self)
        id = try c.decode(String.self, forKey: .id)
        status = try c.decode(ActorStatus.self, forKey: .status)
        message = try c.decodeIfPresent(String.self, forKey: .message)
        revision = try c.decode(Int.self, forKey: .revision)
        createdAt = try c.decode(Double.self, forKey: .createdAt)
        updatedAt = try c.decode(Double.self, forKey: .updatedAt)
    }
}

public enum ExecutionStatus: String, Codable, Sendable, CaseIterable {
    case submitted, running, complete, error

    public var isFinal: Bool { self == .complete || self == .error }
}

/// One message's run.
public struct ExecutionRecord: Codable, Sendable, Hashable {
    public var id: String
    public var actorId: String
    public var status: ExecutionStatus
    /// 1, or 2 when it was run again after its worker was lost.
    public var attempt: Int
    public var contentType: String
    public var messageBytes: Int
    /// The message's query variables.
    public var env: [String: String]
    public var workerId: String?
    public var propletId: String?
    public var exitCode: Int32?
    public var error: String?
    public var submittedAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    /// Seconds the container ran.
    public var runtime: Double?
    public var cpuUsec: UInt64?
    public var memoryPeakBytes: UInt64?
    public var resultsBytes: Int?
    public var resultsTruncated: Bool?
    /// Set when a user asked to kill it.
    public var killRequested: Bool?

    public init(id: String, actorId: String, contentType: String, messageBytes: Int, env: [String: String], submittedAt: Double) {
        self.id = id
        self.actorId = actorId
        status = .submitted
        attempt = 1
        self.contentType = contentType
        self.messageBytes = messageBytes
        self.env = env
        self.submittedAt = submittedAt
    }
}

/// A queued execution's message, as the inbox keeps it.
public struct InboxMessage: Sendable, Hashable {
    public var executionID: String
    public var actorID: String
    public var body: Data
    public var contentType: String

    public init(executionID: String, actorID: String, body: Data, contentType: String) {
        self.executionID = executionID
        self.actorID = actorID
        self.body = body
        self.contentType = contentType
    }
}

public enum WorkerStatus: String, Codable, Sendable, CaseIterable {
    /// Waiting for room on a proplet, or sent to one.
    case requested
    /// The proplet fetches and unpacks the image.
    case pulling
    case ready
    case busy
    case shuttingDown = "shutting_down"
}

/// Where a worker is, each state with only the data it has: a reason while it waits for room,
/// a proplet once it has room, an execution only while busy (or retiring after it).
public enum WorkerState: Sendable, Hashable {
    /// No proplet has room for it yet.
    case waiting(reason: String?)
    /// Its prepare was sent to `on`.
    case requested(on: String)
    case pulling(on: String)
    case ready(on: String)
    case busy(on: String, execution: String)
    /// Retiring; a busy one finishes its execution first.
    case shuttingDown(on: String, execution: String?)

    public var status: WorkerStatus {
        switch self {
        case .waiting, .requested: .requested
        case .pulling: .pulling
        case .ready: .ready
        case .busy: .busy
        case .shuttingDown: .shuttingDown
        }
    }

    public var proplet: String? {
        switch self {
        case .waiting: nil
        case .requested(let p), .pulling(let p), .ready(let p), .busy(let p, _), .shuttingDown(let p, _): p
        }
    }

    public var execution: String? {
        switch self {
        case .busy(_, let e): e
        case .shuttingDown(_, let e): e
        default: nil
        }
    }

    /// The same worker once its execution has ended: a busy one is ready, a retiring one goes.
    public var idle: WorkerState {
        switch self {
        case .busy(let p, _): .ready(on: p)
        case .shuttingDown(let p, _): .shuttingDown(on: p, execution: nil)
        default: self
        }
    }

    /// The state a stored or received status, proplet and execution stand for: one without its
    /// proplet waits; a busy one without its execution is ready.
    public init(status: WorkerStatus, proplet: String?, execution: String?, reason: String?) {
        guard let proplet else {
            self = .waiting(reason: reason)
            return
        }
        switch status {
        case .requested: self = .requested(on: proplet)
        case .pulling: self = .pulling(on: proplet)
        case .ready: self = .ready(on: proplet)
        case .busy: self = execution.map { .busy(on: proplet, execution: $0) } ?? .ready(on: proplet)
        case .shuttingDown: self = .shuttingDown(on: proplet, execution: execution)
        }
    }
}

public struct WorkerRecord: Codable, Sendable, Hashable {
    public var id: String
    public var actorId: String
    public var revision: Int
    /// Where it is; ``status``, ``propletId``, ``executionId`` and ``reason`` are read from it.
    public var state: WorkerState
    public var status: WorkerStatus { state.status }
    public var propletId: String? { state.proplet }
    /// What it reserves on its proplet.
    public var resources: Resources?
    /// The execution it runs.
    public var executionId: String? { state.execution }
    /// Why it waits.
    public var reason: String? {
        if case .waiting(let reason) = state { return reason }
        return nil
    }
    public var createdAt: Double
    public var lastUsedAt: Double
    public var executions: Int

    public init(id: String, actorId: String, revision: Int, createdAt: Double) {
        self.id = id
        self.actorId = actorId
        self.revision = revision
        state = .waiting(reason: nil)
        self.createdAt = createdAt
        lastUsedAt = createdAt
        executions = 0
    }

    enum Keys: String, CodingKey {
        case id, actorId, revision, status, propletId, resources, executionId, reason, createdAt, lastUsedAt, executions
    }

    // Flat, as the API has always shown it.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        id = try c.decode(String.self, forKey: .id)
        actorId = try c.decode(String.self, forKey: .actorId)
        revision = try c.decode(Int.self, forKey: .revision)
        state = WorkerState(status: try c.decode(WorkerStatus.self, forKey: .status), proplet: try c.decodeIfPresent(String.self, forKey: .propletId),
                            execution: try c.decodeIfPresent(String.self, forKey: .executionId), reason: try c.decodeIfPresent(String.self, forKey: .reason))
        resources = try c.decodeIfPresent(Resources.self, forKey: .resources)
        createdAt = try c.decode(Double.self, forKey: .createdAt)
        lastUsedAt = try c.decode(Double.self, forKey: .lastUsedAt)
        executions = try c.decode(Int.self, forKey: .executions)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(id, forKey: .id)
        try c.encode(actorId, forKey: .actorId)
        try c.encode(revision, forKey: .revision)
        try c.encode(status, forKey: .status)
        try c.encodeIfPresent(propletId, forKey: .propletId)
        try c.encodeIfPresent(resources, forKey: .resources)
        try c.encodeIfPresent(executionId, forKey: .executionId)
        try c.encodeIfPresent(reason, forKey: .reason)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(lastUsedAt, forKey: .lastUsedAt)
        try c.encode(executions, forKey: .executions)
    }
}

/// Sums over an actor's executions.
public struct ExecutionTotals: Codable, Sendable, Hashable {
    public var count: Int
    public var complete: Int
    public var error: Int
    public var runtime: Double
    public var cpuUsec: UInt64
    public var memoryPeakBytes: UInt64

    public init(count: Int = 0, complete: Int = 0, error: Int = 0, runtime: Double = 0, cpuUsec: UInt64 = 0, memoryPeakBytes: UInt64 = 0) {
        self.count = count
        self.complete = complete
        self.error = error
        self.runtime = runtime
        self.cpuUsec = cpuUsec
        self.memoryPeakBytes = memoryPeakBytes
    }
}
