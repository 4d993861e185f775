/// Where a task is in its life (ARCHITECTURE.md, "State machines").
///
/// `created` → (start) → `pending` → (placed) → `scheduled` → (the proplet reports it running) →
/// `running` → `completed` | `failed` | `stopped`. `pending` and `scheduled` go to `failed` when the
/// task can never run (no proplet could ever hold it, the image cannot be pulled) and to `stopped`
/// on a stop request. `scheduled` and `running` go to `unknown` while their proplet is
/// disconnected, and back when it returns within the grace period (else to `failed`, or `pending`
/// by the restart policy); an `unknown` task's result is accepted.
public enum TaskState: String, Codable, Sendable, CaseIterable, Hashable {
    case created, pending, scheduled, running, completed, failed, stopped
    /// Its proplet is disconnected: it may still be running (Nomad's `unknown` allocation).
    case unknown

    /// Nothing more happens to a task in this state unless it is started again.
    public var isTerminal: Bool { self == .completed || self == .failed || self == .stopped }

    /// The task holds (or is about to hold) resources on a proplet.
    public var isPlaced: Bool { self == .scheduled || self == .running || self == .unknown }
}

/// When a failed task runs again (like Nomad's restart stanza and Docker's `--restart`).
public struct RestartPolicy: Codable, Sendable, Hashable {
    public enum Mode: String, Codable, Sendable, CaseIterable {
        /// A failure is final.
        case never
        /// Run again after a non-zero exit or a lost proplet, up to `maxAttempts` runs in all.
        case onFailure = "on-failure"
    }
    public var mode: Mode
    /// Runs in all, the first included.
    public var maxAttempts: Int

    public init(mode: Mode = .never, maxAttempts: Int = 1) {
        self.mode = mode
        self.maxAttempts = maxAttempts
    }

    public static let never = RestartPolicy()
}
