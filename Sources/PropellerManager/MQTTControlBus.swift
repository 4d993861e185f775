import Logging
import PropellerCore
import PropellerMQTT

/// ``ControlBus`` over MQTT, and the loop that hands proplet messages to the task service.
public struct MQTTControlBus: ControlBus, ActorBus {
    let client: MQTTClient
    let topics: Topics
    let logger: Logger

    /// Answers of the broker's dynamic-security plugin, when the manager administers it.
    let dynamicSecurity: MosquittoDynamicSecurity?

    public init(client: MQTTClient, topics: Topics, logger: Logger, dynamicSecurity: MosquittoDynamicSecurity? = nil) {
        self.client = client
        self.topics = topics
        self.logger = logger
        self.dynamicSecurity = dynamicSecurity
    }

    public func send(_ start: StartTask, to propletID: String) { publish(topics.start(propletID), start) }
    public func send(_ stop: StopTask, to propletID: String) { publish(topics.stop(propletID), stop) }
    public func acknowledge(_ result: TaskAttempt, to propletID: String) { publish(topics.ack(propletID), result) }
    public func confirm(_ epoch: PropletEpoch) { publish(topics.ack(epoch.propletId), epoch) }
    public func send(_ command: VolumeCommand, to propletID: String) { publish(topics.volume(propletID), command) }
    public func send(_ request: OutputRequest, to propletID: String) { publish(topics.output(propletID), request) }
    public func send(_ command: WorkerCommand, to propletID: String) { publish(topics.worker(propletID), command) }
    public func send(_ command: SessionCommand, to propletID: String) { publish(topics.session(propletID), command) }
    public func send(_ command: ExecutionCommand, to propletID: String) { publish(topics.execution(propletID), command) }

    private func publish<T: Encodable>(_ topic: String, _ message: T) {
        do {
            try client.publish(topic, try WireCoding.encode(message))
        } catch {
            // Not lost for good: heartbeats reconcile starts, proplets resend results.
            logger.warning("publish failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }

    /// Subscribes to what proplets send and feeds it to `service` until the stream ends, without
    /// waiting for each report's writes (what arrives during a commit goes in the next batch). A message
    /// must name the proplet whose topic it came on (the broker's ACL lets each proplet identity
    /// write only its own topics), so one proplet cannot speak for another.
    ///
    /// Log blocks, when the client sorts them into its bulk inbox (``isBulk(_:topics:)``), are
    /// read by a loop of their own: a task printing without pause must not delay heartbeats and
    /// results until proplets are declared dead.
    public func run(service: TaskService) async throws {
        for kind in Topics.Report.allCases { try client.subscribe(topics.allReports(kind)) }
        if dynamicSecurity != nil { try client.subscribe(MosquittoDynamicSecurity.responseTopic) }
        await withTaskGroup(of: Void.self) { group in
            for inbox in [client.messages, client.bulkMessages] {
                group.addTask {
                    for await message in inbox { await handle(message, service: service) }
                }
            }
        }
    }

    /// Whether `topic` carries task logs, usage samples or exec sessions' output: the manager's bulk topics.
    public static func isBulk(_ topic: String, topics: Topics) -> Bool { [.logs, .stats, .sessions].contains(topics.parseReport(topic)?.1) }

    private func handle(_ message: MQTTMessage, service: TaskService) async {
        do {
            if message.topic == MosquittoDynamicSecurity.responseTopic {
                dynamicSecurity?.receive(message.payload)
                return
            }
            guard let (sender, kind, taskID) = topics.parseReport(message.topic) else { return }
            if service.revokedProplets.withLock({ $0.contains(sender) }) {
                logger.warning("dropped a message from a revoked proplet", metadata: ["proplet": "\(sender)", "topic": "\(message.topic)"])
                return
            }
            switch kind {
            case .create: await service.handleAnnouncement(try Self.decode(PropletAnnouncement.self, message.payload, sentBy: sender), wait: false)
            case .alive: await service.handleHeartbeat(try Self.decode(PropletHeartbeat.self, message.payload, sentBy: sender), wait: false)
            case .workers: await service.handleWorkerReport(try Self.decode(WorkerReport.self, message.payload, sentBy: sender), wait: false)
            case .executions: await service.handleExecutionReport(try Self.decode(ExecutionReport.self, message.payload, sentBy: sender), wait: false)
            case .results: await service.handleResult(try Self.decode(TaskResult.self, message.payload, sentBy: sender), wait: false)
            case .events: await service.handleEvent(try Self.decode(TaskEvent.self, message.payload, sentBy: sender), wait: false)
            case .outputs: await service.handleOutputReply(try Self.decode(OutputReply.self, message.payload, sentBy: sender))
            case .stats: await service.handleUsage(try Self.decode(UsageReport.self, message.payload, sentBy: sender))
            case .sessions: await service.handleSessionFrame(try Self.decode(SessionFrame.self, message.payload, sentBy: sender))
            case .logs:
                let block = try WireCoding.decode(LogBlock.self, from: message.payload)
                guard block.taskId == taskID else { throw PropellerError(.invalidArgument, "log block for \(block.taskId) on the topic of \(taskID ?? "")") }
                await service.handleLog(block, from: sender)
            }
        } catch let error as PropellerError where error.code == .permissionDenied {
            logger.error("rejected a message", metadata: ["topic": "\(message.topic)", "error": "\(error.message)"])
        } catch {
            logger.warning("dropped a malformed message", metadata: ["topic": "\(message.topic)", "error": "\(error)"])
        }
    }

    /// Decodes a report whose `proplet_id` must be the sender's: the id in the topic the broker
    /// let it write.
    static func decode<M: Decodable & PropletMessage>(_ type: M.Type, _ payload: [UInt8], sentBy sender: String) throws -> M {
        let message = try WireCoding.decode(type, from: payload)
        guard message.propletId == sender else {
            throw PropellerError(.permissionDenied, "proplet \(sender) sent a message as proplet \(message.propletId)")
        }
        return message
    }
}
