#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PropellerCore
import PropellerRuntime

/// Exec sessions on this proplet (`propeller task exec`): each a process started inside a running
/// task (``RunningContainer/exec(_:)``: its namespaces, cgroup, user, capabilities and seccomp
/// filter), its stdio carried to the manager as ``SessionFrame``s and fed by ``SessionCommand``s.
/// One thread per session moves the bytes, waits for the process and reports its exit.
final class ExecSessions: @unchecked Sendable {
    /// At most this many sessions at once on one proplet.
    static let limit = 64
    /// Input accepted ahead of what the process has read, per session.
    static let inputLimit = 4 << 20

    private let lock = NSLock()
    private var sessions: [String: Session] = [:]
    private let propletID: String
    private let publish: @Sendable (SessionFrame) -> Void
    private let logger: Logger

    init(propletID: String, logger: Logger, publish: @escaping @Sendable (SessionFrame) -> Void) {
        self.propletID = propletID
        self.logger = logger
        self.publish = publish
    }

    /// One session's state shared between the message handler and its thread (under the owner's lock).
    private final class Session: @unchecked Sendable {
        let id: String
        let taskID: String
        let wake: (read: Int32, write: Int32)
        var input: [UInt8] = []
        var nextInput = 0
        var early: [Int: (data: [UInt8], eof: Bool)] = [:]
        var eofRequested = false
        var heard = ContinuousClock.now
        var resize: (rows: Int, cols: Int)?
        var signals: [Int32] = []
        /// Why the session was ended from outside (close, silence, lost input).
        var ended: String?

        init(id: String, taskID: String, wake: (read: Int32, write: Int32)) {
            self.id = id
            self.taskID = taskID
            self.wake = wake
        }
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return sessions.count
    }

    /// Handles a command; `execution` is the attempt the command names, when it runs here.
    func handle(_ command: SessionCommand, execution: Execution?) {
        if command.kind == .open {
            open(command, execution: execution)
            return
        }
        lock.lock()
        guard let session = sessions[command.sessionId] else {
            lock.unlock()
            return
        }
        session.heard = .now
        switch command.kind {
        case .open, .keepalive: break
        case .input:
            let seq = command.seq ?? session.nextInput
            let chunk = [UInt8](command.data ?? Data())
            if seq == session.nextInput {
                accept(chunk, eof: command.eof ?? false, into: session)
                while let next = session.early.removeValue(forKey: session.nextInput) { accept(next.data, eof: next.eof, into: session) }
            } else if seq > session.nextInput {
                session.early[seq] = (chunk, command.eof ?? false)
                if session.early.count > 256 { session.ended = session.ended ?? "input was lost on the way (a gap of more than 256 messages)" }
            }
            if session.input.count > Self.inputLimit { session.ended = session.ended ?? "the process did not read its input (over \(Self.inputLimit >> 20) MiB waiting)" }
        case .resize:
            if let rows = command.rows, let cols = command.cols { session.resize = (rows, cols) }
        case .signal:
            if let signal = command.signal, (1...64).contains(signal) { session.signals.append(signal) }
        case .close:
            session.ended = session.ended ?? "closed"
        }
        let wake = session.wake.write
        lock.unlock()
        var byte: UInt8 = 1
        _ = write(wake, &byte, 1)
    }

    private func accept(_ data: [UInt8], eof: Bool, into session: Session) {
        session.input += data
        session.nextInput += 1
        if eof { session.eofRequested = true }
    }

    private func open(_ command: SessionCommand, execution: Execution?) {
        let id = command.sessionId
        func refuse(_ message: String, exitCode: Int32? = nil) {
            publish(SessionFrame(sessionId: id, propletId: propletID, seq: 0, kind: .error, exitCode: exitCode, error: message))
        }
        guard let execution, execution.start.attempt == command.attempt else {
            return refuse("task \(command.taskId) (attempt \(command.attempt)) is not running on proplet \(propletID)")
        }
        guard let argv = command.command, !argv.isEmpty, !argv[0].isEmpty else { return refuse("no command given") }
        lock.lock()
        let busy = sessions[id] != nil ? "session \(id) is already open" : (sessions.count >= Self.limit ? "proplet \(propletID) has \(Self.limit) exec sessions open" : nil)
        lock.unlock()
        if let busy { return refuse(busy) }

        let tty = command.tty ?? false
        var ours: [Int32] = []      // our ends: [stdin write, stdout read, stderr read] or [leader]
        var theirs: [Int32] = []    // the process's 0, 1, 2
        var wake: (read: Int32, write: Int32) = (-1, -1)
        // Once each: with a terminal the follower end is all three of the process's descriptors.
        func closeAll() { for fd in Set(ours + theirs + [wake.read, wake.write]) where fd >= 0 { close(fd) } }
        let process: ExecProcess
        do {
            wake = try StdioPipe.make()
            if tty {
                let pty = try PseudoTerminal.open(rows: command.rows ?? 24, cols: command.cols ?? 80)
                ours = [pty.leader]
                theirs = [pty.follower, pty.follower, pty.follower]
            } else {
                let stdin: (read: Int32, write: Int32) = try (command.stdin ?? false) ? StdioPipe.make() : (Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC), -1)
                let stdout = try StdioPipe.make()
                let stderr = try StdioPipe.make()
                ours = [stdin.write, stdout.read, stderr.read]
                theirs = [stdin.read, stdout.write, stderr.write]
            }
            process = try execution.exec(ExecRequest(command: argv, environment: command.environment ?? [], workingDirectory: command.workingDirectory,
                                                     terminal: tty, stdio: theirs))
        } catch let error as LaunchError {
            closeAll()
            return refuse("\(error)", exitCode: error.exitStatus)
        } catch {
            closeAll()
            return refuse("\(error)")
        }
        for fd in Set(theirs) where fd >= 0 { close(fd) }
        for fd in ours + [wake.read, wake.write] where fd >= 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let session = Session(id: id, taskID: command.taskId, wake: wake)
        lock.lock()
        sessions[id] = session
        lock.unlock()
        publish(SessionFrame(sessionId: id, propletId: propletID, seq: 0, kind: .started))
        logger.info("exec session started", metadata: ["session": "\(id)", "task": "\(command.taskId)", "pid": "\(process.pid)", "tty": "\(tty)"])
        let fds = ours
        let thread = Thread { [self] in
            pump(session, process: process, tty: tty, fds: fds)
        }
        thread.name = "exec \(id.prefix(8))"
        thread.start()
    }

    /// The session's thread: moves input in and output out until the process's output ends,
    /// then reaps it and reports its exit.
    private func pump(_ session: Session, process: ExecProcess, tty: Bool, fds: [Int32]) {
        var seq = 1
        var stdinFD: Int32? = tty ? fds[0] : (fds[0] >= 0 ? fds[0] : nil)
        var outputs: [(fd: Int32, stream: LogBlock.Stream)] = tty ? [(fds[0], .stdout)] : [(fds[1], .stdout), (fds[2], .stderr)]
        var killedBecause: String?
        var toClose = Set(fds + [session.wake.read, session.wake.write])
        toClose.remove(-1)
        var buffer = [UInt8](repeating: 0, count: SessionCommand.chunkBytes)
        while !outputs.isEmpty {
            lock.lock()
            let pendingInput = !session.input.isEmpty
            lock.unlock()
            var polled = [pollfd(fd: session.wake.read, events: Int16(POLLIN), revents: 0)]
            for o in outputs { polled.append(pollfd(fd: o.fd, events: Int16(POLLIN), revents: 0)) }
            if let stdinFD, pendingInput {
                if let i = polled.firstIndex(where: { $0.fd == stdinFD }) { polled[i].events |= Int16(POLLOUT) } else {
                    polled.append(pollfd(fd: stdinFD, events: Int16(POLLOUT), revents: 0))
                }
            }
            _ = poll(&polled, nfds_t(polled.count), 1000)
            var drain: UInt8 = 0
            while read(session.wake.read, &drain, 1) == 1 {}

            // What the manager asked for since the last round.
            lock.lock()
            if let fd = stdinFD, !session.input.isEmpty {
                let n = session.input.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n > 0 { session.input.removeFirst(n) }
                // A process that closed its stdin reads nothing more: what waits is dropped.
                else if n < 0 && errno == EPIPE { session.input = [] }
            }
            let closeInput = session.eofRequested && session.input.isEmpty
            if closeInput { session.eofRequested = false }
            let resize = session.resize
            session.resize = nil
            let signals = session.signals
            session.signals = []
            if session.ended == nil && ContinuousClock.now - session.heard > .seconds(SessionCommand.idleLimit) {
                session.ended = "nothing heard from the manager for \(Int(SessionCommand.idleLimit)) s"
            }
            let ended = session.ended
            lock.unlock()
            if closeInput, let fd = stdinFD {
                if tty {
                    var eot: UInt8 = 4  // ^D: end of input at the start of a line
                    _ = write(fd, &eot, 1)
                } else {
                    close(fd)
                    toClose.remove(fd)
                    stdinFD = nil
                }
            }
            if let resize, tty { PseudoTerminal.resize(fds[0], rows: resize.rows, cols: resize.cols) }
            for signal in signals { process.signal(signal) }
            if let ended, killedBecause == nil {
                killedBecause = ended
                process.signal(SIGKILL)
            }

            // Output, in chunks, as it comes; end of file (a terminal: EIO once nothing holds it).
            var still: [(fd: Int32, stream: LogBlock.Stream)] = []
            for o in outputs {
                var open = true
                while true {
                    let n = read(o.fd, &buffer, buffer.count)
                    if n > 0 {
                        publish(SessionFrame(sessionId: session.id, propletId: propletID, seq: seq, kind: .output, stream: o.stream, data: Data(buffer[..<n])))
                        seq += 1
                        if n < buffer.count { break }
                        continue
                    }
                    if n < 0 && (errno == EAGAIN || errno == EINTR) { break }
                    open = false
                    break
                }
                if open { still.append(o) }
            }
            outputs = still
        }
        let code = process.wait()
        for fd in toClose { close(fd) }
        lock.lock()
        sessions[session.id] = nil
        lock.unlock()
        publish(SessionFrame(sessionId: session.id, propletId: propletID, seq: seq, kind: .exit, exitCode: code, error: killedBecause))
        logger.info("exec session ended", metadata: ["session": "\(session.id)", "task": "\(session.taskID)", "exit": "\(code)"])
    }
}
