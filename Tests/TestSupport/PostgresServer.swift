import Foundation
import PropellerCore

/// A real PostgreSQL 15 server (Debian's `postgresql`) on a free loopback port: `initdb` into a
/// temp directory, password authentication (SCRAM) for the user `propeller`, stopped and
/// removed afterwards. As root it runs as the unprivileged `postgres` user, as PostgreSQL
/// requires. `crash()` is the fault the store tests inject.
public final class PostgresServer: @unchecked Sendable {
    public static let binaries = "/usr/lib/postgresql/15/bin"
    public let port: Int
    public let password: String
    public let directory: TempDirectory
    private var process: Process?
    private var dataDir: String { directory.path + "/data" }
    public var logPath: String { directory.path + "/postgres.log" }

    /// Whether the server's programs are installed (scripts/setup installs them).
    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: binaries + "/initdb") }

    public init() throws {
        guard Self.isInstalled else {
            throw PropellerError(.notFound, "PostgreSQL 15 is not installed (\(Self.binaries)/initdb): scripts/setup installs Debian's postgresql")
        }
        directory = try TempDirectory("propeller-postgres")
        port = try freeLoopbackPort()
        password = UUID().uuidString
        let pwfile = directory.path + "/pw"
        writeFile(pwfile, password + "\n")
        if isRoot {
            guard let user = getpwnam("postgres") else { throw PropellerError(.notFound, "no postgres user (Debian's postgresql package creates it)") }
            for path in [directory.path, pwfile] { chown(path, user.pointee.pw_uid, user.pointee.pw_gid) }
        }
        let r = try runProcess(Self.privileged.0, Self.privileged.1 + [Self.binaries + "/initdb", "-D", dataDir, "-U", "propeller", "--auth=scram-sha-256",
                                                                        "--pwfile=" + pwfile, "-E", "UTF8", "--no-sync", "--no-instructions"], timeout: 60)
        guard r.status == 0 else {
            throw PropellerError(.internalError, "initdb failed: \(String(decoding: r.stderr, as: UTF8.self))")
        }
        try start()
    }

    /// The runner that drops root to the postgres user (setpriv execs, so the pid is postgres's).
    private static var privileged: (String, [String]) {
        isRoot ? ("/usr/bin/setpriv", ["--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]) : ("/usr/bin/env", [])
    }

    /// The URL of a database on this server (`postgres`, or one made by ``createDatabase(_:)``).
    public func url(database: String = "postgres") -> String {
        "postgres://propeller:\(password)@127.0.0.1:\(port)/\(database)?sslmode=disable"
    }

    public func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.privileged.0)
        p.arguments = Self.privileged.1 + [Self.binaries + "/postgres", "-D", dataDir, "-k", directory.path, "-p", "\(port)",
                                           "-c", "listen_addresses=127.0.0.1", "-c", "logging_collector=off", "-c", "max_connections=200"]
        p.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: logPath) ?? FileHandle.nullDevice
        try p.run()
        process = p
        for _ in 0..<300 {
            if (try? psql("SELECT 1"))?.status == 0 { return }
            if !p.isRunning { break }
            usleep(20_000)
        }
        stop()
        throw PropellerError(.internalError, "postgres did not start on port \(port): \(readFile(logPath) ?? "")")
    }

    /// Runs SQL with psql as the `propeller` user.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try runProcess("/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "propeller", "-d", database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                               environment: ["PGPASSWORD": password, "PATH": "/usr/bin:/bin"], timeout: 30)
        return (r.status, String(decoding: r.stdout, as: UTF8.self), String(decoding: r.stderr, as: UTF8.self))
    }

    /// A new, empty database; its URL.
    public func createDatabase(_ name: String) throws -> String {
        let r = try psql("CREATE DATABASE \"\(name)\"")
        guard r.status == 0 else { throw PropellerError(.internalError, "create database \(name): \(r.stderr)") }
        return url(database: name)
    }

    /// The server processes of the sessions a client opened with this `application_name`.
    public func sessions(of application: String) throws -> [pid_t] {
        let r = try psql("SELECT pid FROM pg_stat_activity WHERE application_name = '\(application)'")
        guard r.status == 0 else { throw PropellerError(.internalError, "list sessions: \(r.stderr)") }
        return r.stdout.split(separator: "\n").compactMap { pid_t($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// Fast shutdown (SIGINT: clients are disconnected, the server stops cleanly).
    public func stop() { end(SIGINT) }

    /// SIGKILL of the postmaster, as a crash ends it; ``start()`` brings it back (with recovery).
    public func crash() {
        end(SIGKILL)
        // Its backends notice the postmaster's death and exit; wait until the port is free.
        for _ in 0..<500 where canConnect(port: port) { usleep(10_000) }
    }

    private func end(_ signal: Int32) {
        guard let p = process else { return }
        let pid = p.processIdentifier
        kill(pid, SIGCONT)
        kill(pid, signal)
        for _ in 0..<500 where p.isRunning { usleep(10_000) }
        if p.isRunning { kill(pid, SIGKILL) }
        p.waitUntilExit()
        process = nil
    }

    deinit {
        stop()
        directory.remove()
    }
}
