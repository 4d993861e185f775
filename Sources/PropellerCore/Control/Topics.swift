/// The MQTT topics of DESIGN.md §3, under upstream's base `m/{domain}/c/{channel}`.
public struct Topics: Sendable, Hashable {
    public let base: String

    public init(domain: String, channel: String) {
        base = "m/\(domain)/c/\(channel)"
    }

    /// Proplet → manager: "I exist, with this capacity".
    public var propletCreate: String { base + "/control/proplet/create" }
    /// Proplet → manager: heartbeats, and the Last Will ("offline").
    public var propletAlive: String { base + "/control/proplet/alive" }
    /// Proplet → manager: final results.
    public var results: String { base + "/control/proplet/results" }
    /// Proplet → manager: phase changes (pulling, unpacking, running).
    public var events: String { base + "/control/proplet/events" }
    /// Manager → one proplet.
    public func start(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/start" }
    public func stop(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/stop" }
    /// Manager → one proplet: "I have stored this result", so the proplet stops resending it.
    public func ack(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/ack" }
    /// Manager → one proplet: a subscription filter covering start, stop and ack.
    public func propletInbox(_ propletID: String) -> String { base + "/control/proplet/\(propletID)/+" }
    /// Proplet → subscribers: log blocks of one task.
    public func logs(_ taskID: String) -> String { base + "/tasks/\(taskID)/logs" }
    public var allLogs: String { base + "/tasks/+/logs" }

    /// The task id in a `tasks/{id}/logs` topic.
    public func taskID(inLogsTopic topic: String) -> String? {
        let prefix = base + "/tasks/"
        guard topic.hasPrefix(prefix), topic.hasSuffix("/logs") else { return nil }
        let id = topic.dropFirst(prefix.count).dropLast(5)
        return id.isEmpty || id.contains("/") ? nil : String(id)
    }

    /// Proplet → proxy: registry requests.
    public var registryRequests: String { base + "/registry/proplet" }
    /// Proxy → one proplet: answers.
    public func registryResponses(_ propletID: String) -> String { base + "/registry/proplets/\(propletID)" }
    /// Proxy → proplets: the chunks of one blob.
    public func blob(_ digest: String) -> String { base + "/registry/blobs/\(digest)" }
    /// The digest in a `registry/blobs/{digest}` topic.
    public func digest(inBlobTopic topic: String) -> String? {
        let prefix = base + "/registry/blobs/"
        guard topic.hasPrefix(prefix) else { return nil }
        return String(topic.dropFirst(prefix.count))
    }

    /// Whether `component` (a proplet id) is safe inside a topic: no wildcards or separators.
    public static func isValidComponent(_ component: String) -> Bool {
        !component.isEmpty && component.count <= 128 && !component.contains { $0 == "/" || $0 == "+" || $0 == "#" || $0 == "\0" }
    }
}
