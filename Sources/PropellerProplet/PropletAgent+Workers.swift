#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PropellerCore
import PropellerImage

/// An actor's warm worker on this proplet: its image pulled and unpacked, so that an execution
/// is one container start.
final class WorkerSlot: @unchecked Sendable {
    let command: WorkerCommand
    var ready = false
    /// The image, once pulled and unpacked.
    var image: Image?
    var retiring = false
    /// The execution it runs now.
    var running: Execution?

    init(_ command: WorkerCommand) { self.command = command }
}

/// A worker prepare or an execution run that waits, with the starts, for the manager to confirm
/// the placement epoch.
enum HeldActorCommand: Sendable {
    case prepare(WorkerCommand)
    case run(ExecutionCommand)
}

/// Actor workers: prepared and retired on the manager's word, executions run on them.
extension PropletAgent {
    func handleWorker(_ c: WorkerCommand) {
        switch c.action {
        case .prepare: prepareWorker(c)
        case .retire:
            // Retired while its prepare waited for the epoch: it never comes to be.
            heldActorCommands.removeAll { if case .prepare(let w) = $0 { w.workerId == c.workerId } else { false } }
            retireWorker(c.workerId)
        }
    }

    func prepareWorker(_ c: WorkerCommand) {
        switch admission(c.epoch) {
        case .now: break
        case .held:
            heldActorCommands.append(.prepare(c))
            return
        case .withdrawn(let current):
            logger.notice("dropped a worker prepare the manager withdrew", metadata: ["worker": "\(c.workerId)", "its_epoch": "\(c.epoch ?? 0)", "epoch": "\(current)"])
            return
        }
        if let existing = workers[c.workerId] {
            // A repeated prepare (QoS 1 redelivery, a manager that restarted): say where it stands.
            if existing.ready { report(WorkerReport(propletId: options.id, workerId: c.workerId, status: .ready)) }
            return
        }
        guard accepting else {
            report(WorkerReport(propletId: options.id, workerId: c.workerId, status: .error, error: "proplet \(options.id) is shutting down"))
            return
        }
        let slot = WorkerSlot(c)
        workers[c.workerId] = slot
        logger.info("preparing worker", metadata: ["worker": "\(c.workerId)", "actor": "\(c.actorId)", "image": "\(c.image)"])
        report(WorkerReport(propletId: options.id, workerId: c.workerId, status: .pulling))
        let runner = self.runner
        Thread.detachNewThread { [self] in
            var failure: String?
            var image: Image?
            do { image = try runner.warm(c.image) } catch { failure = "\(error)" }
            let warmed = image
            Task { await self.workerPrepared(c.workerId, image: warmed, error: failure) }
        }
    }

    func workerPrepared(_ id: String, image: Image?, error: String?) {
        guard let slot = workers[id] else { return }
        if let error {
            workers[id] = nil
            logger.warning("worker failed", metadata: ["worker": "\(id)", "error": "\(error)"])
            report(WorkerReport(propletId: options.id, workerId: id, status: .error, error: error))
        } else if slot.retiring {
            workers[id] = nil
            report(WorkerReport(propletId: options.id, workerId: id, status: .stopped))
        } else {
            slot.ready = true
            slot.image = image
            logger.info("worker ready", metadata: ["worker": "\(id)", "actor": "\(slot.command.actorId)"])
            report(WorkerReport(propletId: options.id, workerId: id, status: .ready))
        }
    }

    /// Retires a worker: at once when idle, after its execution otherwise.
    func retireWorker(_ id: String) {
        guard let slot = workers[id] else {
            report(WorkerReport(propletId: options.id, workerId: id, status: .stopped))
            return
        }
        slot.retiring = true
        if slot.running == nil && slot.ready {
            workers[id] = nil
            logger.info("worker retired", metadata: ["worker": "\(id)"])
            report(WorkerReport(propletId: options.id, workerId: id, status: .stopped))
        }
    }

    func handleExecution(_ c: ExecutionCommand) {
        switch c.action {
        case .kill:
            if let i = heldActorCommands.firstIndex(where: { if case .run(let r) = $0 { r.executionId == c.executionId && r.attempt == c.attempt } else { false } }) {
                // Killed while it waited for the epoch: it never runs, and says so.
                heldActorCommands.remove(at: i)
                remember(TaskAttempt(taskId: c.executionId, attempt: c.attempt))
                let outcome = TaskResult(taskId: c.executionId, attempt: c.attempt, propletId: options.id, state: .stopped, error: "killed before it ran",
                                         finishedAt: WallClock.now())
                publish(topics.report(.executions, from: options.id),
                        ExecutionReport(propletId: options.id, workerId: c.workerId, executionId: c.executionId, attempt: c.attempt, outcome: outcome))
                return
            }
            guard let slot = workers[c.workerId], let e = slot.running, e.start.taskId == c.executionId else { return }
            logger.info("killing execution", metadata: ["execution": "\(c.executionId)", "worker": "\(c.workerId)"])
            e.requestStop(signal: SIGKILL, grace: 0)
        case .run:
            runExecution(c)
        }
    }

    func runExecution(_ c: ExecutionCommand) {
        let ref = TaskAttempt(taskId: c.executionId, attempt: c.attempt)
        if seen.contains(ref) { return }
        switch admission(c.epoch) {
        case .now: break
        case .held:
            if !heldActorCommands.contains(where: { if case .run(let r) = $0 { r.executionId == c.executionId && r.attempt == c.attempt } else { false } }) {
                heldActorCommands.append(.run(c))
            }
            return
        case .withdrawn(let current):
            remember(ref)
            logger.notice("dropped an execution run the manager withdrew", metadata: ["execution": "\(c.executionId)", "attempt": "\(c.attempt)", "its_epoch": "\(c.epoch ?? 0)", "epoch": "\(current)"])
            return
        }
        remember(ref)
        guard let slot = workers[c.workerId], slot.ready, !slot.retiring else {
            let outcome = TaskResult(taskId: c.executionId, attempt: c.attempt, propletId: options.id, state: .failed,
                                     error: "worker \(c.workerId) is not ready on proplet \(options.id)", finishedAt: WallClock.now())
            publish(topics.report(.executions, from: options.id),
                    ExecutionReport(propletId: options.id, workerId: c.workerId, executionId: c.executionId, attempt: c.attempt, outcome: outcome,
                                    workerMissing: true))
            return
        }
        let w = slot.command
        var env = w.env.merging(c.env) { _, message in message }
        env["PROPELLER_ACTOR_ID"] = w.actorId
        env["PROPELLER_EXECUTION_ID"] = c.executionId
        env["PROPELLER_WORKER_ID"] = w.workerId
        env["PROPELLER_CONTENT_TYPE"] = c.contentType
        let dir = "/" + ExecutionFiles.directory + "/"
        env["PROPELLER_MESSAGE_FILE"] = dir + ExecutionFiles.message
        env["PROPELLER_RESULTS"] = dir + ExecutionFiles.results
        if c.state != nil { env["PROPELLER_STATE"] = dir + ExecutionFiles.state }
        if !c.contentType.hasPrefix("application/octet-stream") && c.message.count <= ExecutionFiles.messageInEnvironment {
            env["MSG"] = String(decoding: c.message, as: UTF8.self)
        }
        var start = StartTask(taskId: c.executionId, attempt: c.attempt, name: w.actorId, image: w.image, command: w.command, env: env,
                              workdir: nil, user: nil, resources: w.resources, timeoutSeconds: w.timeoutSeconds, network: w.network ?? "none",
                              volumes: w.volumes, tmpfs: w.tmpfs, secrets: w.secrets)
        start.secretValues = w.secretValues
        if let own = c.secrets, !own.isEmpty {
            start.secrets = (w.secrets ?? []) + own
            start.secretValues = (w.secretValues ?? []) + (c.secretValues ?? [])
        }
        let execution = Execution(start: start, image: slot.image, onScratch: true)
        slot.running = execution
        let runner = self.runner
        let client = self.client
        let topics = self.topics
        let propletID = options.id
        let collected = Locked<(results: Data, truncated: Bool, state: String?, stateError: String?)>((Data(), false, nil, nil))
        let hooks = TaskRunner.Hooks(
            phase: { _ in }, log: { _, _, _ in },
            prepare: { root in try ExecutionFiles.write(into: root, message: c.message, state: c.state) },
            collect: { root in
                let results = ExecutionFiles.read(ExecutionFiles.results, in: root, limit: c.resultLimit)
                var state: String?
                var stateError: String?
                if c.state != nil {
                    if let (bytes, truncated) = ExecutionFiles.read(ExecutionFiles.state, in: root, limit: ExecutionFiles.stateLimit), !truncated {
                        if (try? JSONSerialization.jsonObject(with: bytes, options: [.fragmentsAllowed])) != nil {
                            state = String(decoding: bytes, as: UTF8.self)
                        } else {
                            stateError = "the state file does not hold valid JSON: the state is unchanged"
                        }
                    } else {
                        stateError = "the state file is missing, not a regular file or over \(ExecutionFiles.stateLimit) bytes: the state is unchanged"
                    }
                }
                collected.withLock { $0 = (results?.0 ?? Data(), results?.truncated ?? false, state, stateError) }
            })
        Thread.detachNewThread { [self] in
            runner.run(execution, hooks: hooks) { outcome in
                let extra = collected.withLock { $0 }
                let report = ExecutionReport(propletId: propletID, workerId: w.workerId, executionId: c.executionId, attempt: c.attempt, outcome: outcome,
                                             results: extra.results, resultsTruncated: extra.truncated, state: extra.state, stateError: extra.stateError)
                do {
                    try client.publish(topics.report(.executions, from: propletID), try WireCoding.encode(report))
                } catch {
                    // The next heartbeats show the worker idle: the manager runs the message again.
                    self.logger.warning("publish of an execution report failed", metadata: ["execution": "\(c.executionId)", "error": "\(error)"])
                }
                Task { await self.executionEnded(slot, execution) }
            }
        }
    }

    func executionEnded(_ slot: WorkerSlot, _ execution: Execution) {
        if slot.running === execution { slot.running = nil }
        if slot.retiring { retireWorker(slot.command.workerId) }
    }

    /// Every worker this proplet has (preparing ones too), for the heartbeat.
    var workerBeats: [WorkerBeat] {
        workers.values.map { slot in
            WorkerBeat(workerId: slot.command.workerId, running: slot.running.map { "\($0.start.taskId)/\($0.start.attempt)" })
        }.sorted { $0.workerId < $1.workerId }
    }

    func report(_ r: WorkerReport) { publish(topics.report(.workers, from: options.id), r) }
}
