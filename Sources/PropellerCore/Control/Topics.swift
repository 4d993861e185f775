/// The MQTT topics (ARCHITECTURE.md, "Wire protocol"), under upstream's base `m/{domain}/c/{channel}`.
///
/// Every topic a proplet publishes on carries its own id, so a broker ACL can let each proplet
/// identity write only its own topics (`propeller provision` writes that ACL) and the receiver can
/// check that a message's `proplet_id` is the one its topic names:
///
/// | topic under the base | direction |
/// |---|---|
/// | `control/manager/{proplet}/create|alive|results|events|workers|executions|outputs|stats|sessions` | proplet → manager |
/// | `control/manager/{proplet}/logs/{task}` | proplet → manager |
/// | `control/proplet/{proplet}/start|stop|ack|worker|exec|volume|output|session` | manager → one proplet |
/// | `registry/requests/{proplet}` | proplet → proxy |
/// | `registry/responses/{proplet}` | proxy → one proplet |
/// | `registry/blobs/{digest}` | proxy → proplets |
public struct Topics: Sendable, Hashable {
    public let base: String
    public let domain: String
    public let channel: String

    public init(domain: String, channel: String) {
        self.domain = domain
        self.channel = channel
        base = "m/\(domain)/c/\(channel)"
    }

    /// What a proplet sends the manager.
    public enum Report: String, Sendable, CaseIterable {
        /// "I exist, with this capacity".
        case create
        /// Heartbeats, and the Last Will ("offline").
        case alive
        /// Final results.
        case results
        /// Phase changes (pulling, unpacking, running).
        case events
        /// Log blocks: `logs/{task}`.
        case logs
        /// Actor workers' state changes.
        case workers
        /// Actor executions' outcomes.
        case executions
        /// Answers to output requests (``OutputReply``).
        case outputs
        /// Live usage of running tasks (``UsageReport``).
        case stats
        /// Exec sessions' output and ends (``SessionFrame``).
        case sessions
    }

    /// Proplet `propletID` → manager.
    public func report(_ kind: Report, from propletID: String) -> String { base + "/control/manager/\(propletID)/\(kind.rawValue)" }
    /// Proplet `propletID` → manager: log blocks of one task.
    public func logs(from propletID: String, task taskID: String) -> String { base + "/control/manager/\(propletID)/logs/\(taskID)" }
    /// The manager's subscription for one kind of report from every proplet.
    public func allReports(_ kind: Report) -> String {
        base + "/control/manager/+/" + (kind == .logs ? "logs/+" : kind.rawValue)
    }

    /// Parses a proplet → manager topic: who sent it, what it is, and for logs the task.
    public func parseReport(_ topic: String) -> (propletID: String, kind: Report, taskID: String?)? {
        let prefix = base + "/control/manager/"
        guard topic.hasPrefix(prefix) else { return nil }
        let parts = topic.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, Topics.isValidComponent(parts[0]), let kind = Report(rawValue: parts[1]) else { return nil }
        switch (kind, parts.count) {
        case (.logs, 3): return Topics.isValidComponent(parts[2]) ? (parts[0], kind, parts[2]) : nil
        case (.logs, _): return nil
        case (_, 2): return (parts[0], kind, nil)
        default: return nil
        }
    }

    /// Manager → one proplet.
    public func start(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/start" }
    public func stop(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/stop" }
    /// Manager → one proplet: "I have stored this result", so the proplet stops resending it; or
    /// (a ``PropletEpoch``) "your placement epoch is this", the answer to a heartbeat that asks.
    /// On the acknowledgement topic so that broker ACLs written before epochs existed pass it.
    public func ack(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/ack" }
    /// Manager → one proplet: prepare or retire an actor worker.
    public func worker(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/worker" }
    /// Manager → one proplet: run or kill an actor execution.
    public func execution(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/exec" }
    /// Manager → one proplet: list or send a task's outputs (``OutputRequest``).
    public func output(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/output" }
    /// Manager → one proplet: remove one of its named volumes (``VolumeCommand``).
    public func volume(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/volume" }
    /// Manager → one proplet: an exec session's commands (``SessionCommand``).
    public func session(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/session" }
    /// What the manager sends proplets (the last part of `control/proplet/{id}/…`).
    public static let managerCommands = ["start", "stop", "ack", "worker", "exec", "volume", "output", "session"]
    /// Manager → one proplet: a subscription filter covering every command.
    public func propletInbox(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/+" }

    /// Proplet → proxy: registry requests of one proplet.
    public func registryRequests(from propletID: String) -> String { base + "/registry/requests/\(propletID)" }
    /// The proxy's subscription: every proplet's requests.
    public var allRegistryRequests: String { base + "/registry/requests/+" }
    /// The proplet id in a `registry/requests/{id}` topic.
    public func propletID(inRequestTopic topic: String) -> String? {
        let prefix = base + "/registry/requests/"
        guard topic.hasPrefix(prefix) else { return nil }
        let id = String(topic.dropFirst(prefix.count))
        return Topics.isValidComponent(id) ? id : nil
    }
    /// Proxy → one proplet: answers.
    public func registryResponses(_ propletID: String) -> String { base + "/registry/responses/\(propletID)" }
    /// Proxy → proplets: the chunks of one blob.
    public func blob(_ digest: String) -> String { base + "/registry/blobs/\(digest)" }
    /// Every blob topic (the proplets' read permission).
    public var allBlobs: String { base + "/registry/blobs/+" }
    /// The digest in a `registry/blobs/{digest}` topic.
    public func digest(inBlobTopic topic: String) -> String? {
        let prefix = base + "/registry/blobs/"
        guard topic.hasPrefix(prefix) else { return nil }
        return String(topic.dropFirst(prefix.count))
    }

    /// Whether `component` (a proplet id, a task id, a domain) is safe inside a topic and an ACL
    /// file: no wildcards, separators, whitespace or control characters.
    public static func isValidComponent(_ component: String) -> Bool {
        !component.isEmpty && component.utf8.count <= 128
            && !component.unicodeScalars.contains { $0 == "/" || $0 == "+" || $0 == "#" || $0.value < 0x21 || $0.value == 0x7f }
    }
}
