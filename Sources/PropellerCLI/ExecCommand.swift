import ArgumentParser
import Foundation
import PropellerCore
import PropellerManager
import PropellerRuntime

/// `propeller task exec`: a command inside a running task, its stdio carried through the manager.
struct TaskExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command inside a running task: its namespaces, cgroup, user, capabilities and seccomp filter.",
        discussion: """
            The command gets no more privilege than the task itself. Its exit code is this command's \
            (127: not found in the task, 126: not executable).

              propeller task exec ID -- ps
              propeller task exec -it ID -- sh
            """)
    @OptionGroup var client: ClientOptions
    @Flag(name: [.customShort("i"), .long], help: "Send this command's stdin to the process.") var interactive = false
    @Flag(name: [.customShort("t"), .long], help: "Give the process a terminal (with -i on a terminal: an interactive shell).") var tty = false
    @Option(name: [.short, .customLong("env")], help: ArgumentHelp("Set an environment variable for the process (repeatable).", valueName: "key=value"))
    var environment: [String] = []
    @Option(name: [.short, .customLong("workdir")], help: ArgumentHelp("Working directory inside the task (default: the task's).", valueName: "dir"))
    var workingDirectory: String?
    @Argument(help: "Task id.") var id: String
    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "cmd")) var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command after --: propeller task exec \(id) -- sh") }
        for entry in environment where !entry.contains("=") || entry.hasPrefix("=") {
            throw ValidationError("--env \(entry): expected key=value")
        }
    }

    func run() throws {
        let api = try client.client()
        let onTerminal = isatty(0) != 0
        let size = tty ? PseudoTerminal.size(of: onTerminal ? 0 : 1) : nil
        let request = ExecSessionRequest(command: command, tty: tty, stdin: interactive, environment: environment.isEmpty ? nil : environment,
                                         workingDirectory: workingDirectory, rows: size?.rows, cols: size?.cols)
        let session = try api.decode(ExecSessionView.self, try api.send("POST", "/tasks/\(id)/exec", body: Array(try WireCoding.encode(request))))
        let path = "/tasks/\(id)/exec/\(session.sessionId)"

        // A local terminal in raw mode while the remote one runs: keys go through as typed.
        let raw = tty && interactive && onTerminal ? RawTerminal() : nil
        defer { raw?.restore() }
        if interactive { Self.forwardInput(api, path) }
        if tty && onTerminal { Self.forwardResizes(api, path) }

        var next = 0
        var exitCode: Int32?
        var failure: String?
        var retries = 0
        while exitCode == nil && failure == nil {
            do {
                try api.stream(path + "/output?after=\(next)") { line in
                    let frame = try api.decode(SessionFrame.self, line)
                    next = frame.seq + 1
                    retries = 0
                    switch frame.kind {
                    case .started: break
                    case .output: Self.write(frame.stream == .stderr ? 2 : 1, frame.data ?? Data())
                    case .exit:
                        exitCode = frame.exitCode ?? 1
                        failure = frame.error
                    case .error:
                        failure = frame.error ?? "the session failed"
                        exitCode = frame.exitCode
                    }
                }
            } catch let error as ClientError where error.status == 0 && retries < 5 {
                // The connection dropped: follow again from the next frame.
                retries += 1
                usleep(500_000)
                continue
            }
            if exitCode == nil && failure == nil {
                retries += 1
                guard retries <= 5 else { failure = "the manager stopped sending the session's output"; break }
                usleep(500_000)
            }
        }
        raw?.restore()
        if let failure { FileHandle.standardError.write(Data("propeller: \(failure)\n".utf8)) }
        let code = exitCode ?? 1
        if code != 0 { throw ExitCode(code) }
    }

    static func write(_ fd: Int32, _ data: Data) {
        data.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            var at = 0
            while at < bytes.count {
                let n = Glibc.write(fd, base + at, bytes.count - at)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }
                at += n
            }
        }
    }

    /// Reads stdin on a thread of its own and sends it as it comes; its end closes the process's stdin.
    static func forwardInput(_ api: ManagerClient, _ path: String) {
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 32 << 10)
            while true {
                let n = read(0, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                do {
                    if n <= 0 {
                        _ = try api.exchange("POST", path + "/input?eof=true", body: [], contentType: "application/octet-stream")
                        return
                    }
                    _ = try api.exchange("POST", path + "/input", body: Array(buffer[..<n]), contentType: "application/octet-stream")
                } catch {
                    return
                }
            }
        }
        thread.start()
    }

    /// Sends the local terminal's new size whenever it changes (SIGWINCH).
    static func forwardResizes(_ api: ManagerClient, _ path: String) {
        let signals = SignalPipe.install([SIGWINCH])
        guard signals >= 0 else { return }
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                var p = pollfd(fd: signals, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, -1) >= 0 || errno == EINTR else { return }
                var changed = false
                while read(signals, &byte, 1) == 1 { changed = true }
                guard changed, let size = PseudoTerminal.size(of: 0) else { continue }
                let body = Array(#"{"rows":\#(size.rows),"cols":\#(size.cols)}"#.utf8)
                _ = try? api.exchange("POST", path + "/resize", body: body)
            }
        }
        thread.start()
    }
}

/// The local terminal switched to raw mode (no echo, no line editing, no signals from keys:
/// Ctrl-C goes to the remote process) until ``restore()``.
final class RawTerminal {
    private var saved = termios()
    private var active = false

    init?() {
        guard tcgetattr(0, &saved) == 0 else { return nil }
        var raw = saved
        cfmakeraw(&raw)
        guard tcsetattr(0, TCSANOW, &raw) == 0 else { return nil }
        active = true
    }

    func restore() {
        guard active else { return }
        active = false
        _ = tcsetattr(0, TCSANOW, &saved)
    }
}
