import Foundation
import PropellerCore

/// What a user asked for when creating a task. Immutable while the task is active.
public struct TaskSpec: Codable, Sendable, Hashable {
    public var name: String
    public var image: String
    /// Replaces the image's Cmd; nil runs the image's own command.
    public var command: [String]?
    public var env: [String: String]
    public var workdir: String?
    public var user: String?
    /// Reserved on the proplet and enforced as cgroup limits. Memory defaults to the manager's
    /// `--default-memory` when not given.
    public var resources: Resources
    public var timeoutSeconds: Double?
    public var labels: [String: String]
    /// Proplet labels a placement must match (`{"zone": "a"}`).
    public var constraints: [String: String]
    /// Pins the task to one proplet.
    public var propletId: String?
    public var restartPolicy: RestartPolicy
    /// `none` (loopback only, the default), `host`, `bridge` or a network a proplet offers.
    public var network: String
    /// Ports published on the proplet's host (host port 0: the manager picks one).
    public var publish: [PortMapping]?
    /// Host and named volumes (nil: none; older records have no key).
    public var volumes: [VolumeMount]?
    /// New tmpfs mounts (nil: none).
    public var tmpfs: [TmpfsMount]?
    /// Secrets as files (names and targets; their values stay sealed in the store).
    public var secrets: [SecretMount]?
    /// Files the proplet fetches before the task starts.
    public var artifacts: [ArtifactSpec]?
    /// A directory of the task kept on its proplet after it ends, for `task cp`.
    public var output: String?
    /// The W3C trace context (`traceparent`) of the API request that created the task: the
    /// trace its scheduling, start, pull, unpack, run and result join (set by the manager).
    public var trace: [String: String]?
    /// The namespace it belongs to (nil: `default`, as every task from before namespaces); set
    /// by the API from the request's namespace, never from the body.
    public var namespace: String?
    /// Each attempt gets an API token of this role, bound to the task's namespace, valid while
    /// it runs (``TaskIdentity``); nil: none.
    public var apiTokenRole: Role?

    public init(name: String, image: String, command: [String]? = nil, env: [String: String] = [:], workdir: String? = nil, user: String? = nil,
                resources: Resources = Resources(), timeoutSeconds: Double? = nil, labels: [String: String] = [:], constraints: [String: String] = [:],
                propletId: String? = nil, restartPolicy: RestartPolicy = .never, network: String = "none") {
        self.name = name
        self.image = image
        self.command = command
        self.env = env
        self.workdir = workdir
        self.user = user
        self.resources = resources
        self.timeoutSeconds = timeoutSeconds
        self.labels = labels
        self.constraints = constraints
        self.propletId = propletId
        self.restartPolicy = restartPolicy
        self.network = network
    }
}

/// Where a task is in its life, each state with only the data it has: a proplet once its
/// attempt is placed, a proplet-side phase only while it is placed. A `scheduled` task without a
/// proplet, or a `pending` one with a phase, cannot be written down.
public enum TaskStatus: Sendable, Hashable {
    case created
    /// Queued for placement.
    case pending
    /// The start was sent to `on`.
    case scheduled(on: String, phase: String?)
    case running(on: String, phase: String?)
    /// Its proplet disconnected: it may still run there, nothing new goes there.
    case unknown(on: String, phase: String?)
    /// Ended; `on` is the proplet of its last attempt, when it was placed.
    case completed(on: String?)
    case failed(on: String?)
    case stopped(on: String?)

    public var state: TaskState {
        switch self {
        case .created: .created
        case .pending: .pending
        case .scheduled: .scheduled
        case .running: .running
        case .unknown: .unknown
        case .completed: .completed
        case .failed: .failed
        case .stopped: .stopped
        }
    }

    /// The proplet its current (or last) attempt was placed on.
    public var proplet: String? {
        switch self {
        case .created, .pending: nil
        case .scheduled(let p, _), .running(let p, _), .unknown(let p, _): p
        case .completed(let p), .failed(let p), .stopped(let p): p
        }
    }

    /// The proplet-side phase while placed (pulling, unpacking, running).
    public var phase: String? {
        switch self {
        case .scheduled(_, let phase), .running(_, let phase), .unknown(_, let phase): phase
        default: nil
        }
    }

    /// An ended status (`state` is `completed`, `failed` or `stopped`; any other is read as
    /// `failed`).
    public static func ended(_ state: TaskState, on proplet: String?) -> TaskStatus {
        switch state {
        case .completed: .completed(on: proplet)
        case .stopped: .stopped(on: proplet)
        default: .failed(on: proplet)
        }
    }

    /// The status a stored or received state, proplet and phase stand for. A placed state
    /// without its proplet cannot be: it is read as `pending` (placed again).
    public init(state: TaskState, proplet: String?, phase: String?) {
        switch state {
        case .created: self = .created
        case .pending: self = .pending
        case .scheduled, .running, .unknown:
            guard let proplet else {
                self = .pending
                return
            }
            self = state == .scheduled ? .scheduled(on: proplet, phase: phase) : state == .running ? .running(on: proplet, phase: phase) : .unknown(on: proplet, phase: phase)
        case .completed, .failed, .stopped: self = .ended(state, on: proplet)
        }
    }

    /// The same placed status in `phase` (others have none).
    func with(phase: String?) -> TaskStatus {
        switch self {
        case .scheduled(let p, _): .scheduled(on: p, phase: phase)
        case .running(let p, _): .running(on: p, phase: phase)
        case .unknown(let p, _): .unknown(on: p, phase: phase)
        default: self
        }
    }
}

/// A task as the manager keeps it: the spec and where it is in its life.
public struct TaskRecord: Codable, Sendable, Hashable {
    public var id: String
    public var spec: TaskSpec
    /// Where it is; ``state``, ``assignedProplet`` and ``phase`` are read from it.
    public var status: TaskStatus
    public var state: TaskState { status.state }
    /// Why the task is where it is: "waiting for capacity: …", "proplet lost", the run's error.
    public var reason: String?
    /// The proplet-side phase while scheduled or running (pulling, unpacking, running).
    public var phase: String? { status.phase }
    /// 0 before the first start; each start or restart adds one.
    public var attempt: Int
    /// The proplet the current (or last) attempt was placed on.
    public var assignedProplet: String? { status.proplet }
    public var stopRequested: Bool
    public var createdAt: Double
    public var updatedAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    public var result: TaskResult?
    /// The published ports of the current (or last) attempt, with the host ports it got.
    public var ports: [PortMapping]?
    /// While its image is pulled: how far (the proplet's last report; in memory only).
    public var pull: PullReport?

    public init(id: String, spec: TaskSpec, createdAt: Double) {
        self.id = id
        self.spec = spec
        status = .created
        attempt = 0
        stopRequested = false
        self.createdAt = createdAt
        updatedAt = createdAt
    }

    enum StatusKeys: String, CodingKey {
        case id, state, reason, phase, attempt, assignedProplet, stopRequested, createdAt, updatedAt, startedAt, finishedAt, result, ports, pull
    }

    // The API shows the spec's fields beside the status fields, in one flat object.
    public init(from decoder: any Decoder) throws {
        spec = try TaskSpec(from: decoder)
        let c = try decoder.container(keyedBy: StatusKeys.self)
        id = try c.decode(String.self, forKey: .id)
        status = TaskStatus(state: try c.decode(TaskState.self, forKey: .state), proplet: try c.decodeIfPresent(String.self, forKey: .assignedProplet),
                            phase: try c.decodeIfPresent(String.self, forKey: .phase))
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        attempt = try c.decode(Int.self, forKey: .attempt)
        stopRequested = try c.decodeIfPresent(Bool.self, forKey: .stopRequested) ?? false
        createdAt = try c.decode(Double.self, forKey: .createdAt)
        updatedAt = try c.decode(Double.self, forKey: .updatedAt)
        startedAt = try c.decodeIfPresent(Double.self, forKey: .startedAt)
        finishedAt = try c.decodeIfPresent(Double.self, forKey: .finishedAt)
        result = try c.decodeIfPresent(TaskResult.self, forKey: .result)
        ports = try c.decodeIfPresent([PortMapping].self, forKey: .ports)
        pull = try c.decodeIfPresent(PullReport.self, forKey: .pull)
    }

    public func encode(to encoder: any Encoder) throws {
        try spec.encode(to: encoder)
        var c = encoder.container(keyedBy: StatusKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(state, forKey: .state)
        try c.encodeIfPresent(reason, forKey: .reason)
        try c.encodeIfPresent(phase, forKey: .phase)
        try c.encode(attempt, forKey: .attempt)
        try c.encodeIfPresent(assignedProplet, forKey: .assignedProplet)
        try c.encode(stopRequested, forKey: .stopRequested)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
        try c.encodeIfPresent(startedAt, forKey: .startedAt)
        try c.encodeIfPresent(finishedAt, forKey: .finishedAt)
        try c.encodeIfPresent(result, forKey: .result)
        try c.encodeIfPresent(ports, forKey: .ports)
        try c.encodeIfPresent(pull, forKey: .pull)
    }

    var currentAttempt: TaskAttempt { TaskAttempt(taskId: id, attempt: attempt) }
}

/// One entry of a task's history: a state change (or a phase change) and when it happened.
public struct TaskTransition: Codable, Sendable, Hashable {
    public var taskId: String
    public var state: TaskState
    public var attempt: Int
    public var at: Double
    public var reason: String?

    public init(taskId: String, state: TaskState, attempt: Int, at: Double, reason: String?) {
        self.taskId = taskId
        self.state = state
        self.attempt = attempt
        self.at = at
        self.reason = reason
    }
}

/// The kept tail of a task's output.
public struct TaskLogs: Codable, Sendable, Hashable {
    public var stdout: String
    public var stderr: String

    public init(stdout: String = "", stderr: String = "") {
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// An operator's drain of a proplet: nothing new is placed there, actor workers move, and
/// tasks finish there until the deadline, when those still running are stopped and go where
/// their restart policy sends them (as Nomad's `node drain -deadline`).
public struct PropletDrain: Codable, Sendable, Hashable {
    /// Wall-clock time the drain began.
    public var startedAt: Double
    /// Wall-clock time when what still runs there is stopped (nil: no deadline, it all finishes).
    public var deadline: Double?

    public init(startedAt: Double, deadline: Double?) {
        self.startedAt = startedAt
        self.deadline = deadline
    }
}

/// A proplet as the manager knows it.
public struct PropletRecord: Codable, Sendable, Hashable {
    public var id: String
    public var name: String
    public var version: String
    public var labels: [String: String]
    public var capacity: Capacity
    public var os: String
    public var arch: String
    public var cgroupMode: String
    /// The host volumes it offers (nil: none).
    public var hostVolumes: [HostVolume]?
    /// The CNI networks it offers (nil: none).
    public var networks: [String]?
    /// The only namespaces it takes work from (nil: every namespace).
    public var namespaces: [String]?
    /// Its named volumes, as its heartbeats last said (nil: none).
    public var volumes: [NamedVolumeInfo]?
    /// Heartbeats arrive (`state` is `alive`).
    public var alive: Bool
    /// `alive`, `disconnected` (its work is `unknown` for the grace period) or `lost` (see
    /// ``PropletConnection``); absent in records written before it existed.
    public var state: String?
    /// Wall-clock time of the last heartbeat or announcement.
    public var lastSeen: Double
    public var registeredAt: Double
    /// Why it is disconnected or lost ("missed 3 heartbeats", "its connection dropped (Last Will)").
    public var reason: String?
    /// Shutting down (its heartbeats say so): its tasks finish, no new one is placed there.
    public var draining: Bool?
    /// false: an operator closed it to new work (`propeller proplet eligibility ID off`, or a
    /// drain); nil: eligible.
    public var eligible: Bool?
    /// An operator's drain in progress (``PropletDrain``); cleared when nothing of the cluster's
    /// runs there any more (the proplet stays ineligible).
    public var drain: PropletDrain?
    /// Its placement epoch: raised each time the manager gives it up (lost), carried by every
    /// start placed on it (``StartTask/epoch``); absent (0) until the first loss.
    public var epoch: UInt64?
    /// Filled in by the API from the reservation ledger.
    public var allocated: Resources?
    public var taskCount: Int?

    public init(announcement a: PropletAnnouncement, now: Double) {
        id = a.propletId
        name = a.name
        version = a.version
        labels = a.labels
        capacity = a.capacity
        os = a.os
        arch = a.arch
        cgroupMode = a.cgroupMode
        hostVolumes = a.hostVolumes?.isEmpty == false ? a.hostVolumes : nil
        networks = a.networks?.isEmpty == false ? a.networks : nil
        namespaces = a.namespaces?.isEmpty == false ? a.namespaces?.sorted() : nil
        alive = true
        state = "alive"
        lastSeen = now
        registeredAt = now
    }
}
