import Foundation
import PropellerCore

/// Where the manager keeps what must survive a restart: tasks with their history, results and
/// logs, proplets, and (``ActorStore``) actors with their inboxes. SQLite (``SQLiteStore``) by default; the protocol leaves room for a
/// PostgreSQL implementation that several managers share.
///
/// The manager's decisions reach the store as ``StoreBatch``es: everything decided while the
/// previous batch was being written, in one transaction (group commit, ``commit(_:)``).
/// Everything a manager keeps: tasks and proplets, actors, tokens, secrets, the audit log,
/// namespaces, nonces, grants and proplet identities.
public typealias ManagerStores = ManagerStore & TokenStore & SecretStore & AuditStore & NamespaceStore & NonceStore & GrantStore & PropletIdentityStore

public protocol ManagerStore: ActorStore {
    /// Writes a batch in one transaction, all of it or nothing: new tasks first, then task
    /// changes, transitions, proplets and the actor layer's writes in their order.
    func commit(_ batch: StoreBatch) throws
    /// Adds new tasks (spec and status) with their first transitions, in one transaction.
    func insertTasks(_ tasks: [TaskRecord], transitions: [TaskTransition]) throws
    /// Stores the status of existing tasks and appends transitions, atomically. A task that has
    /// ended with a result of its current attempt also gets that result's output tails as its
    /// logs (they are authoritative: the streamed blocks may have gaps).
    func saveTasks(_ tasks: [TaskRecord], transitions: [TaskTransition]) throws
    /// Replaces a task's spec (allowed only while it is not active; the caller checks).
    func updateSpec(_ task: TaskRecord) throws
    func task(id: String) throws -> TaskRecord?
    func history(taskID: String) throws -> [TaskTransition]
    /// Tasks in creation order, optionally of one state and of one namespace (nil: all), and how
    /// many there are in all.
    func tasks(offset: Int, limit: Int, state: TaskState?, namespace: String?) throws -> (total: Int, tasks: [TaskRecord])
    /// Pending, scheduled and running tasks, in creation order (what a restarted manager resumes).
    func activeTasks() throws -> [TaskRecord]
    /// Up to `limit` tasks whose name is `handle` or whose id starts with it, of one namespace
    /// (nil: all), in creation order: what a name or an id prefix may mean.
    func tasks(matching handle: String, namespace: String?, limit: Int) throws -> [TaskRecord]
    func taskCounts() throws -> [TaskState: Int]
    func deleteTask(id: String) throws

    func saveProplet(_ proplet: PropletRecord) throws
    func proplets() throws -> [PropletRecord]
    func deleteProplet(id: String) throws

    /// Appends output to a task's stream, keeping only the last `keep` bytes.
    func appendLog(taskID: String, stream: LogBlock.Stream, data: String, keep: Int) throws
    /// Replaces a stream's kept output (the proplet's final tail is authoritative).
    func setLogs(taskID: String, logs: TaskLogs) throws
    func logs(taskID: String) throws -> TaskLogs
}

extension ManagerStore {
    /// Adds one new task.
    public func insertTask(_ task: TaskRecord, transition: TaskTransition) throws {
        try insertTasks([task], transitions: [transition])
    }
}

/// A write of the actor layer, in the order the cluster state made it.
public enum ActorStoreWrite: Sendable, Equatable {
    case saveActor(ActorRecord)
    case setActorState(actor: String, state: String)
    /// Ignored when the worker's actor is gone.
    case saveWorker(WorkerRecord)
    case deleteWorker(String)
    /// Ignored when the execution's actor is gone.
    case saveExecution(ExecutionRecord)
    /// A final execution with its output: it leaves the inbox.
    case finishExecution(ExecutionRecord, TaskLogs, Data)
}

/// What the manager decided since its last write, written by ``ManagerStore/commit(_:)`` in one
/// transaction.
public struct StoreBatch: Sendable {
    /// Tasks that do not exist in the store yet.
    public var newTasks: [TaskRecord] = []
    /// The newest version of each changed task.
    public var tasks: [TaskRecord] = []
    /// Transitions in the order they happened (of new and changed tasks).
    public var transitions: [TaskTransition] = []
    public var proplets: [PropletRecord] = []
    public var actorWrites: [ActorStoreWrite] = []

    public init(newTasks: [TaskRecord] = [], tasks: [TaskRecord] = [], transitions: [TaskTransition] = [], proplets: [PropletRecord] = [],
                actorWrites: [ActorStoreWrite] = []) {
        self.newTasks = newTasks
        self.tasks = tasks
        self.transitions = transitions
        self.proplets = proplets
        self.actorWrites = actorWrites
    }

    public var isEmpty: Bool { newTasks.isEmpty && tasks.isEmpty && transitions.isEmpty && proplets.isEmpty && actorWrites.isEmpty }
    /// Rows written, for logs and errors.
    public var count: Int { newTasks.count + tasks.count + transitions.count + proplets.count + actorWrites.count }
}

extension ManagerStore {
    /// Tasks of every namespace.
    public func tasks(offset: Int, limit: Int, state: TaskState?) throws -> (total: Int, tasks: [TaskRecord]) {
        try tasks(offset: offset, limit: limit, state: state, namespace: nil)
    }
}
