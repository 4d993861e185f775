import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import PropellerCore

/// A small pool of PostgreSQL connections that blocking callers borrow.
///
/// The store contract is synchronous (the state machine's driver writes before it goes on, as it
/// does with SQLite), so a caller waits here on a thread of its own while postgres-nio works on
/// its event loops; this must never be called from an event loop thread. Every wait has a
/// deadline: a connection that does not answer in time (a frozen network, a server that hangs)
/// is closed and the call fails, instead of hanging the manager.
final class PostgresConnections: @unchecked Sendable {
    let location: PostgresLocation
    let configuration: PostgresConnection.Configuration
    let timeout: TimeAmount
    private let maximum: Int
    private let logger: Logger
    private let group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    private let condition = Condition()
    private var idle: [PostgresConnection] = []
    private var open = 0
    private var nextID = 0

    init(location: PostgresLocation, maximum: Int = 6, timeout: TimeAmount = .seconds(10), logger: Logger) throws {
        self.location = location
        self.configuration = try location.configuration()
        self.maximum = maximum
        self.timeout = timeout
        self.logger = logger
    }

    /// Runs `body` with a connection of its own. A connection whose call failed is closed, not
    /// reused: its session may be in the middle of a transaction or of a message.
    func with<R>(_ body: (Session) throws -> R) throws -> R {
        let connection = try borrow()
        do {
            let result = try body(Session(connection: connection, timeout: timeout))
            give(back: connection, healthy: true)
            return result
        } catch {
            give(back: connection, healthy: false)
            throw error
        }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT; ROLLBACK, by closing, on any error).
    func transaction<R>(_ body: (Session) throws -> R) throws -> R {
        try with { session in
            try session.run("BEGIN")
            let result = try body(session)
            try session.run("COMMIT")
            return result
        }
    }

    /// Opens a connection that the caller owns (the leadership lease's, kept apart from the pool).
    func connect() throws -> PostgresConnection {
        let id = condition.locked { () -> Int in
            nextID += 1
            return nextID
        }
        return try Session.wait(PostgresConnection.connect(on: group.next(), configuration: configuration, id: id, logger: logger), timeout: timeout + .seconds(5))
    }

    private func borrow() throws -> PostgresConnection {
        condition.lock()
        while idle.isEmpty && open >= maximum { condition.wait() }
        if let connection = idle.popLast() {
            condition.unlock()
            if !connection.isClosed { return connection }
            condition.locked { open -= 1 }
            return try borrow()
        }
        open += 1
        condition.unlock()
        do {
            return try connect()
        } catch {
            condition.locked { open -= 1 }
            condition.broadcast()
            throw error
        }
    }

    private func give(back connection: PostgresConnection, healthy: Bool) {
        if healthy && !connection.isClosed {
            condition.locked { idle.append(connection) }
        } else {
            Self.close(connection)
            condition.locked { open -= 1 }
        }
        condition.broadcast()
    }

    /// Closes a connection without waiting; the closure keeps it alive until it is closed.
    static func close(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// Closes every idle connection (those in use close as they come back unhealthy or not).
    func shutdown() {
        let connections = condition.locked { () -> [PostgresConnection] in
            defer { idle.removeAll() }
            open -= idle.count
            return idle
        }
        for c in connections { _ = try? Session.wait(c.close(), timeout: .seconds(2)) }
    }
}

/// One borrowed connection: statements run one after another, or are pipelined.
struct Session {
    let connection: PostgresConnection
    let timeout: TimeAmount
    private static let logger = Logger(label: "propeller.postgres")

    /// Runs one statement and waits for all its rows.
    @discardableResult
    func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try Self.wait(connection.query(query, logger: Self.logger), timeout: timeout, closing: connection)
    }

    /// Sends one statement without waiting; the session keeps the order. ``wait(_:)`` the
    /// returned futures (all of them) before the next ``run(_:)``.
    func send(_ query: PostgresQuery) -> EventLoopFuture<PostgresQueryResult> {
        connection.query(query, logger: Self.logger)
    }

    /// Waits for statements sent with ``send(_:)``, failing with the first error.
    func wait(_ futures: [EventLoopFuture<PostgresQueryResult>]) throws {
        var first: (any Error)?
        for f in futures {
            do { _ = try Self.wait(f, timeout: timeout, closing: connection) } catch { if first == nil { first = error } }
        }
        if let first { throw first }
    }

    /// Waits for `future` at most `timeout`; on the deadline the connection (if given) is closed.
    static func wait<T: Sendable>(_ future: EventLoopFuture<T>, timeout: TimeAmount, closing connection: PostgresConnection? = nil) throws -> T {
        let promise = future.eventLoop.makePromise(of: T.self)
        future.cascade(to: promise)
        let deadline = future.eventLoop.scheduleTask(in: timeout) {
            promise.fail(PropellerError(.systemCall, "no answer from PostgreSQL in \(timeout.nanoseconds / 1_000_000_000) s"))
            if let connection { PostgresConnections.close(connection) }
        }
        defer { deadline.cancel() }
        return try promise.futureResult.wait()
    }
}

extension Condition {
    func locked<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// What a PostgreSQL error says, without the statement's bound values (they may hold a task's
/// environment): the server's message, its SQLSTATE, or the connection failure.
func describe(_ error: any Error) -> String {
    guard let e = error as? PSQLError else { return "\(error)" }
    var text = "\(e.code)"
    if let message = e.serverInfo?[.message] { text = message }
    if let detail = e.serverInfo?[.detail] { text += " (\(detail))" }
    if let state = e.serverInfo?[.sqlState] { text += " [SQLSTATE \(state)]" }
    if let underlying = e.underlying { text += ": \(underlying)" }
    return text
}
