import Logging
import PropellerCore
import PropellerMQTT

/// ``ControlBus`` over MQTT, and the loop that hands proplet messages to the task service.
public struct MQTTControlBus: ControlBus {
    let client: MQTTClient
    let topics: Topics
    let logger: Logger

    public init(client: MQTTClient, topics: Topics, logger: Logger) {
        self.client = client
        self.topics = topics
        self.logger = logger
    }

    public func send(_ start: StartTask, to propletID: String) { publish(topics.start(propletID), start) }
    public func send(_ stop: StopTask, to propletID: String) { publish(topics.stop(propletID), stop) }
    public func acknowledge(_ result: TaskAttempt, to propletID: String) { publish(topics.ack(propletID), result) }

    private func publish<T: Encodable>(_ topic: String, _ message: T) {
        do {
            try client.publish(topic, try WireCoding.encode(message))
        } catch {
            // Not lost for good: heartbeats reconcile starts, proplets resend results.
            logger.warning("publish failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }

    /// Subscribes to what proplets send and feeds it to `service` until the stream ends.
    public func run(service: TaskService) async throws {
        for filter in [topics.propletCreate, topics.propletAlive, topics.results, topics.events, topics.allLogs] {
            try client.subscribe(filter)
        }
        for await message in client.messages {
            do {
                switch message.topic {
                case topics.propletCreate:
                    let a = try WireCoding.decode(PropletAnnouncement.self, from: message.payload)
                    guard Topics.isValidComponent(a.propletId) else { throw PropellerError(.invalidArgument, "invalid proplet id") }
                    await service.handleAnnouncement(a)
                case topics.propletAlive:
                    await service.handleHeartbeat(try WireCoding.decode(PropletHeartbeat.self, from: message.payload))
                case topics.results:
                    await service.handleResult(try WireCoding.decode(TaskResult.self, from: message.payload))
                case topics.events:
                    await service.handleEvent(try WireCoding.decode(TaskEvent.self, from: message.payload))
                default:
                    if let taskID = topics.taskID(inLogsTopic: message.topic) {
                        let block = try WireCoding.decode(LogBlock.self, from: message.payload)
                        guard block.taskId == taskID else { throw PropellerError(.invalidArgument, "log block for \(block.taskId) on the topic of \(taskID)") }
                        await service.handleLog(block)
                    }
                }
            } catch {
                logger.warning("dropped a malformed message", metadata: ["topic": "\(message.topic)", "error": "\(error)"])
            }
        }
    }
}
