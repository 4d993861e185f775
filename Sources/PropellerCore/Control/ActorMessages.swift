#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `control/proplet/{id}/worker`: make a warm worker for an actor (image present, rootfs
/// unpacked) or retire one.
public struct WorkerCommand: Codable, Sendable, Hashable {
    public enum Action: String, Codable, Sendable { case prepare, retire }
    public var action: Action
    public var workerId: String
    public var actorId: String
    public var revision: Int
    public var image: String
    public var command: [String]?
    public var env: [String: String]
    public var resources: Resources
    public var timeoutSeconds: Double?
    /// A prepare's placement epoch (as ``StartTask/epoch``): the proplet holds it until the
    /// manager confirms its epoch, and drops it when the epoch has moved on since.
    public var epoch: UInt64?
    /// Every execution's volumes, tmpfs mounts and secrets (as a task's); the secrets' values are
    /// added by the manager as a prepare leaves for the proplet.
    public var volumes: [VolumeMount]?
    public var tmpfs: [TmpfsMount]?
    public var secrets: [SecretMount]?
    public var secretValues: [SecretValue]?
    /// Every execution's network (absent: none).
    public var network: String?

    public init(action: Action, workerId: String, actorId: String, revision: Int = 0, image: String = "", command: [String]? = nil,
                env: [String: String] = [:], resources: Resources = .zero, timeoutSeconds: Double? = nil, epoch: UInt64? = nil,
                volumes: [VolumeMount]? = nil, tmpfs: [TmpfsMount]? = nil, secrets: [SecretMount]? = nil, network: String? = nil) {
        self.epoch = epoch
        self.network = network
        self.volumes = volumes
        self.tmpfs = tmpfs
        self.secrets = secrets
        self.action = action
        self.workerId = workerId
        self.actorId = actorId
        self.revision = revision
        self.image = image
        self.command = command
        self.env = env
        self.resources = resources
        self.timeoutSeconds = timeoutSeconds
    }
}

/// `control/manager/{id}/workers`: a worker's state on the proplet changed.
public struct WorkerReport: Codable, Sendable, Hashable {
    public enum Status: String, Codable, Sendable { case pulling, ready, error, stopped }
    public var propletId: String
    public var workerId: String
    public var status: Status
    public var error: String?

    public init(propletId: String, workerId: String, status: Status, error: String? = nil) {
        self.propletId = propletId
        self.workerId = workerId
        self.status = status
        self.error = error
    }
}

/// What a heartbeat says of one worker: that it exists, and what it runs.
public struct WorkerBeat: Codable, Sendable, Hashable {
    public var workerId: String
    /// The execution attempt it runs now, as `EXECUTION/ATTEMPT`.
    public var running: String?

    public init(workerId: String, running: String? = nil) {
        self.workerId = workerId
        self.running = running
    }
}

/// `control/proplet/{id}/exec`: run one message on a warm worker, or kill a running execution.
public struct ExecutionCommand: Codable, Sendable, Hashable {
    public enum Action: String, Codable, Sendable { case run, kill }
    public var action: Action
    public var executionId: String
    public var attempt: Int
    public var workerId: String
    /// The message's bytes (base64 in JSON).
    public var message: Data
    public var contentType: String
    /// The message's query variables; the worker's defaults are under them.
    public var env: [String: String]
    /// A stateful actor's state (JSON text), handed to the execution as a file.
    public var state: String?
    /// Results kept at most (bytes).
    public var resultLimit: Int
    /// A run's placement epoch (as ``StartTask/epoch``).
    public var epoch: UInt64?
    /// Secrets of this run alone, beside the worker's (its own API token), with their values.
    public var secrets: [SecretMount]?
    public var secretValues: [SecretValue]?

    public init(action: Action, executionId: String, attempt: Int, workerId: String, message: Data = Data(), contentType: String = "",
                env: [String: String] = [:], state: String? = nil, resultLimit: Int = 0, epoch: UInt64? = nil) {
        self.epoch = epoch
        self.action = action
        self.executionId = executionId
        self.attempt = attempt
        self.workerId = workerId
        self.message = message
        self.contentType = contentType
        self.env = env
        self.state = state
        self.resultLimit = resultLimit
    }
}

/// `control/manager/{id}/executions`: how one execution ended.
public struct ExecutionReport: Codable, Sendable, Hashable {
    public var propletId: String
    public var workerId: String
    public var executionId: String
    public var attempt: Int
    /// The container's outcome; `task_id` is the execution id.
    public var outcome: TaskResult
    /// What the execution wrote to its results file (capped).
    public var results: Data
    public var resultsTruncated: Bool
    /// A stateful actor's state after the execution, when it wrote valid JSON.
    public var state: String?
    /// Why the state was not taken (it was not valid JSON, or too big).
    public var stateError: String?
    /// The proplet does not have the worker (it restarted): the message never ran.
    public var workerMissing: Bool

    public init(propletId: String, workerId: String, executionId: String, attempt: Int, outcome: TaskResult, results: Data = Data(),
                resultsTruncated: Bool = false, state: String? = nil, stateError: String? = nil, workerMissing: Bool = false) {
        self.propletId = propletId
        self.workerId = workerId
        self.executionId = executionId
        self.attempt = attempt
        self.outcome = outcome
        self.results = results
        self.resultsTruncated = resultsTruncated
        self.state = state
        self.stateError = stateError
        self.workerMissing = workerMissing
    }
}

extension WorkerReport: PropletMessage {}
extension ExecutionReport: PropletMessage {}
