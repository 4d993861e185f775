/// Where a task is in its life (DESIGN.md §4).
///
/// `created` → (start) → `pending` → (placed) → `scheduled` → (the proplet reports it running) →
/// `running` → `completed` | `failed` | `stopped`. `pending` and `scheduled` go to `failed` when the
/// task can never run (no proplet could ever hold it, the image cannot be pulled) and to `stopped`
/// on a stop request.
public enum TaskState: String, Codable, Sendable, CaseIterable, Hashable {
    case created, pending, scheduled, running, completed, failed, stopped

    /// Nothing more happens to a task in this state unless it is started again.
    public var isTerminal: Bool { self == .completed || self == .failed || self == .stopped }

    /// The task holds (or is about to hold) resources on a proplet.
    public var isPlaced: Bool { self == .scheduled || self == .running }
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
