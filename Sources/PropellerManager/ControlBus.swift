import PropellerCore

/// The manager's messages to proplets about actors.
public protocol ActorBus: Sendable {
    func send(_ command: WorkerCommand, to propletID: String)
    func send(_ command: ExecutionCommand, to propletID: String)
}

/// The manager's outgoing messages to proplets. ``MQTTControlBus`` sends them over MQTT; the
/// task service does not know the transport.
public protocol ControlBus: ActorBus {
    func send(_ start: StartTask, to propletID: String)
    func send(_ stop: StopTask, to propletID: String)
    func acknowledge(_ result: TaskAttempt, to propletID: String)
    /// Tells a proplet its current placement epoch (``PropletEpoch``).
    func confirm(_ epoch: PropletEpoch)
    /// Asks a proplet to remove one of its named volumes.
    func send(_ command: VolumeCommand, to propletID: String)
    /// Asks a proplet for a task's outputs.
    func send(_ request: OutputRequest, to propletID: String)
    /// An exec session's command.
    func send(_ command: SessionCommand, to propletID: String)
}

/// Tunables of the manager's task service.
public struct ManagerConfiguration: Sendable {
    /// How often proplets heartbeat; `missedHeartbeats` of them missed means dead.
    public var livenessInterval: Duration = .seconds(5)
    public var missedHeartbeats = 3
    /// How long a disconnected proplet's tasks stay `unknown` before they are failed or
    /// rescheduled (nil: `missedHeartbeats` intervals).
    public var disconnectGrace: Duration?
    /// Memory reserved (and enforced) for a task that does not say.
    public var defaultMemoryBytes: UInt64 = 256 << 20
    /// Processes reserved (and enforced as `pids.max`) for a task that does not say: without a
    /// limit, one fork bomb took the proplet's whole pid space. 32 tasks of 1024 fit the 32768
    /// pids a proplet offers by default.
    public var defaultPids: UInt64 = 1024
    /// Output kept per task and stream.
    public var logKeepBytes = 64 << 10
    public var policy: SchedulingPolicy = .binpack
    /// The actor layer's tunables.
    public var actors = ActorConfiguration()

    public init() {}

    var deadAfter: Duration { livenessInterval * missedHeartbeats }
    var effectiveDisconnectGrace: Duration { disconnectGrace ?? deadAfter }
}
