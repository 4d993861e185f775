import PropellerCore

/// Where the manager keeps what must survive a restart: tasks with their history, results and
/// logs, proplets, and (``ActorStore``) actors with their inboxes. SQLite (``SQLiteStore``) by default; the protocol leaves room for a
/// PostgreSQL implementation that several managers share.
///
/// Writes are batched by the caller: one ``saveTasks(_:transitions:)`` per scheduling pass, in
/// one transaction.
public protocol ManagerStore: ActorStore {
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
    /// Tasks in creation order, optionally of one state, and how many there are in all.
    func tasks(offset: Int, limit: Int, state: TaskState?) throws -> (total: Int, tasks: [TaskRecord])
    /// Pending, scheduled and running tasks, in creation order (what a restarted manager resumes).
    func activeTasks() throws -> [TaskRecord]
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
