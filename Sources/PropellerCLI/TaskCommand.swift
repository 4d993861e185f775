import ArgumentParser
import Foundation
import PropellerCore
import PropellerRunCLI
import PropellerManager

/// `propeller task …`: tasks through the manager's REST API.
struct TaskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task",
        abstract: "Create, start, stop, inspect and delete tasks.",
        subcommands: [TaskCreateCommand.self, TaskListCommand.self, TaskGetCommand.self, TaskStartCommand.self, TaskStopCommand.self,
                      TaskDeleteCommand.self, TaskResultsCommand.self, TaskWaitCommand.self, TaskLogsCommand.self, TaskOutputsCommand.self,
                      TaskCopyCommand.self, TaskStatsCommand.self, TaskExecCommand.self]
    )
}

struct TaskCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a task (and start it with --start, or wait for it with --wait).",
        discussion: """
        With --wait the command shows the task's phase as it changes, then prints its stdout and \
        stderr and exits with its exit code: 128+N when signal N killed it, 124 when --timeout \
        killed it, 125 when it could not run at all (no proplet could hold it, the image could \
        not be pulled).
        """
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "A name for the task.")
    var name: String

    @Option(help: ArgumentHelp("Image reference: host[:port]/repo[:tag][@sha256:…].", valueName: "ref"))
    var image: String

    @Option(help: ArgumentHelp("CPUs to reserve and limit to (e.g. 0.5).", valueName: "n"))
    var cpus: Double?

    @Option(help: ArgumentHelp("Memory to reserve and limit to (64M, 3G; default: the manager's).", valueName: "size"))
    var memory: String?

    @Option(help: ArgumentHelp("Maximum processes and threads.", valueName: "n"))
    var pids: UInt64?

    @Option(help: ArgumentHelp("Kill the task after this long (30s, 5m).", valueName: "duration"))
    var timeout: String?

    @Option(name: [.short, .customLong("env")], help: ArgumentHelp("Environment variable (repeatable).", valueName: "key=value"))
    var env: [String] = []

    @Option(help: ArgumentHelp("Label of the task (repeatable).", valueName: "key=value"))
    var label: [String] = []

    @Option(help: ArgumentHelp("Run only on proplets with this label (repeatable).", valueName: "key=value"))
    var constraint: [String] = []

    @Option(help: ArgumentHelp("Run on this proplet only.", valueName: "id"))
    var proplet: String?

    @Option(name: [.short, .customLong("workdir")], help: ArgumentHelp("Working directory in the container.", valueName: "dir"))
    var workdir: String?

    @Option(name: [.short, .customLong("user")], help: ArgumentHelp("User to run as (UID[:GID] or NAME[:GROUP]).", valueName: "user"))
    var user: String?

    @Option(help: ArgumentHelp("never (default) or on-failure: run again after a failure or a lost proplet.", valueName: "policy"))
    var restart: String?

    @Option(name: .customLong("max-attempts"), help: ArgumentHelp("Runs in all with --restart on-failure (default 3).", valueName: "n"))
    var maxAttempts: Int?

    @Option(help: ArgumentHelp("none (loopback only, default), host, bridge (an address on the proplet's bridge, through the CNI plugins) or a network the proplet's operator defined.", valueName: "network"))
    var network: String?

    @Option(help: ArgumentHelp("A file fetched before the task starts (repeatable): https://, or http:// on the loopback; mounted at DEST (/local/NAME by default), archives unpacked there; checked against its digest when given.", valueName: "url[=/dest][#sha256=hex]"))
    var artifact: [String] = []

    @Option(help: ArgumentHelp("A directory of the task kept on its proplet after it ends (size-capped by the proplet), for `task cp ID:PATH`.", valueName: "/path"))
    var output: String?

    @Option(name: .customLong("api-token-role"),
            help: ArgumentHelp("Give each attempt an API token of this role (developer, viewer, invoker) in the task's namespace, as /run/secrets/propeller-api-token, revoked when the attempt ends.", valueName: "role"))
    var apiTokenRole: String?

    @Option(help: ArgumentHelp("Publish a port of the task on its proplet's host (repeatable; with a bridge network); :PORT lets the manager pick the host port.", valueName: "hostport:port[/tcp|udp]"))
    var publish: [String] = []

    @Option(help: ArgumentHelp("A volume (repeatable): a host volume a proplet offers by this name, else a named volume kept on the proplet across tasks (size=: its limit, set when it is made).", valueName: "name:/path[:ro][:size=1G]"))
    var volume: [String] = []

    @Option(help: ArgumentHelp("A tmpfs for the task alone, charged to its memory (repeatable).", valueName: "/path[:size=64M]"))
    var tmpfs: [String] = []

    @Option(help: ArgumentHelp("A secret of the manager's as a read-only file (repeatable; /run/secrets/NAME unless given).", valueName: "name[:/path]"))
    var secret: [String] = []

    @Flag(help: "Start the task at once.")
    var start = false

    @Flag(help: "Start the task, follow it to its end, print its output and exit with its exit code.")
    var wait = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("Command and arguments (replace the image's Cmd).", valueName: "cmd"))
    var command: [String] = []

    func body() throws -> [UInt8] {
        var object: [String: Any] = ["name": name, "image": image, "start": start || wait]
        var resources: [String: Any] = [:]
        if let cpus {
            guard cpus > 0, cpus.isFinite, cpus * 1000 <= Double(InputLimits.cpuMillis.upperBound) else {
                throw ValidationError("invalid --cpus: expected a positive number up to \(InputLimits.cpuMillis.upperBound / 1000)")
            }
            resources["cpu_millis"] = Int((cpus * 1000).rounded())
        }
        if let memory {
            guard let size = try? ByteSize(parsing: memory) else { throw ValidationError("invalid --memory \"\(memory)\": expected a size like 64M or 3G") }
            resources["memory_bytes"] = size.bytes
        }
        if let pids { resources["pids"] = pids }
        if !resources.isEmpty { object["resources"] = resources }
        if let timeout {
            guard let d = try? DurationParsing.parse(timeout), d > .zero else { throw ValidationError("invalid --timeout \"\(timeout)\": expected a duration like 30s") }
            object["timeout_seconds"] = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        if !env.isEmpty { object["env"] = try pairs(env, flag: "--env") }
        if !label.isEmpty { object["labels"] = try pairs(label, flag: "--label") }
        if !constraint.isEmpty { object["constraints"] = try pairs(constraint, flag: "--constraint") }
        if let proplet { object["proplet_id"] = proplet }
        if let workdir { object["workdir"] = workdir }
        if let user { object["user"] = user }
        if let network { object["network"] = network }
        do {
            let volumes = try volume.map(VolumeMount.init(parsing:))
            let tmpfs = try tmpfs.map(TmpfsMount.init(parsing:))
            let secrets = try secret.map(SecretMount.init(parsing:))
            try MountTarget.checkDistinct(volumes.map(\.target) + tmpfs.map(\.target) + secrets.map(\.target))
            if !secrets.isEmpty { object["secrets"] = secrets.map { ["name": $0.name, "target": $0.target] } }
            if let output { object["output"] = try MountTarget.check(output, what: "--output") }
            if let apiTokenRole { object["api_token_role"] = apiTokenRole }
            let artifacts = try artifact.map(ArtifactSpec.init(parsing:))
            if !artifacts.isEmpty {
                object["artifacts"] = artifacts.map { a in ["url": a.url, "destination": a.destination].merging(a.sha256.map { ["sha256": $0] } ?? [:]) { x, _ in x } }
            }
            let ports = try publish.map(PortMapping.init(parsing:))
            if !ports.isEmpty { object["publish"] = ports.map { ["host_port": Int($0.hostPort), "container_port": Int($0.containerPort), "proto": $0.proto] as [String: Any] } }
            if !volumes.isEmpty {
                object["volumes"] = volumes.map { v in
                    (["name": v.name, "target": v.target, "read_only": v.readOnly] as [String: Any]).merging(v.sizeBytes.map { ["size_bytes": $0] } ?? [:]) { a, _ in a }
                }
            }
            if !tmpfs.isEmpty { object["tmpfs"] = tmpfs.map { t in ["target": t.target].merging(t.sizeBytes.map { ["size_bytes": $0] } ?? [:]) { a, _ in a } } }
        } catch let error as PropellerError {
            throw ValidationError(error.message)
        }
        if restart != nil || maxAttempts != nil {
            var policy: [String: Any] = ["mode": restart ?? "on-failure"]
            if let maxAttempts { policy["max_attempts"] = maxAttempts }
            object["restart_policy"] = policy
        }
        if !command.isEmpty { object["command"] = command }
        return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    func run() throws {
        let api = try client.client()
        let created = try api.send("POST", "/tasks", body: try body())
        let task = try api.decode(TaskRecord.self, created)
        if wait {
            if !client.json { printError("task \(task.id) created") }
            throw ExitCode(try waitForTask(api, id: task.id, json: client.json))
        }
        if client.json { printJSON(created) } else { print(task.id) }
    }

    private func pairs(_ items: [String], flag: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for item in items {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else { throw ValidationError("invalid \(flag) \"\(item)\": expected KEY=VALUE") }
            out[String(item[..<eq])] = String(item[item.index(after: eq)...])
        }
        return out
    }
}

struct TaskListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tasks, oldest first.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions
    @Option(help: ArgumentHelp("Only tasks in this state.", valueName: "state")) var state: String?
    @Option(help: "Skip this many.") var offset = 0
    @Option(help: "At most this many (up to 1000).") var limit = 100

    func run() throws {
        var path = "/tasks?offset=\(offset)&limit=\(limit)"
        if let state { path += "&state=\(state)" }
        let api = try client.client()
        let bytes = try api.send("GET", path)
        struct Page: Decodable { var total: Int; var tasks: [TaskRecord] }
        let format = list.format(client)
        let page = format == .json || format == .yaml ? nil : try api.decode(Page.self, bytes)
        printList(bytes, format, [Column("ID"), Column("NAME"), Column("STATE"), Column("PROPLET"), Column("EXIT"), Column("CREATED"),
                                  Column("IMAGE", wide: true), Column("ATTEMPT", wide: true), Column("CPU", wide: true), Column("MEMORY", wide: true),
                                  Column("LABELS", wide: true), Column("REASON")]) {
            (page?.tasks ?? []).map { t in
                [t.id, t.spec.name, t.state.rawValue, t.assignedProplet ?? "-", t.result?.exitCode.map(String.init) ?? "-", age(t.createdAt),
                 t.spec.image, String(t.attempt), t.spec.resources.cpuMillis == 0 ? "-" : String(Double(t.spec.resources.cpuMillis) / 1000),
                 t.spec.resources.memoryBytes == 0 ? "-" : "\(ByteSize(bytes: t.spec.resources.memoryBytes))",
                 t.spec.labels.keys.sorted().map { "\($0)=\(t.spec.labels[$0] ?? "")" }.joined(separator: ","), t.reason ?? ""]
            }
        }
        if let page, page.total > page.tasks.count + offset { printError("(\(page.tasks.count) of \(page.total); use --offset/--limit for more)") }
    }
}

struct TaskGetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show a task and its history.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String

    func run() throws {
        let bytes = try client.client().send("GET", "/tasks/\(id)")
        if client.json { return printJSON(bytes) }
        struct Detail: Decodable { var history: [TaskTransition] }
        let api = try client.client()
        let t = try api.decode(TaskRecord.self, bytes)
        let history = try api.decode(Detail.self, bytes).history
        var lines = [("ID", t.id), ("Name", t.spec.name), ("Image", t.spec.image), ("State", t.state.rawValue + (t.phase.map { " (\($0))" } ?? "")),
                     ("Attempt", String(t.attempt)), ("Proplet", t.assignedProplet ?? "-"),
                     ("Resources", "memory \(ByteSize(bytes: t.spec.resources.memoryBytes)), cpu \(t.spec.resources.cpuMillis == 0 ? "-" : String(Double(t.spec.resources.cpuMillis) / 1000)), pids \(t.spec.resources.pids == 0 ? "-" : String(t.spec.resources.pids))")]
        if let reason = t.reason { lines.append(("Reason", reason)) }
        if let r = t.result {
            lines.append(("Exit code", r.exitCode.map(String.init) ?? "-"))
            if let e = r.error { lines.append(("Error", e)) }
        }
        printFields(lines)
        print("History:")
        let start = history.first?.at ?? 0
        for h in history {
            print(String(format: "  +%8.3fs  %-10@ %@", h.at - start, h.state.rawValue as NSString, (h.reason ?? "") as NSString))
        }
    }
}

struct TaskStartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Queue a created or finished task for a (new) run.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String
    @Flag(help: "Follow it to its end and exit with its exit code.") var wait = false

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("POST", "/tasks/\(id)/start")
        if wait { throw ExitCode(try waitForTask(api, id: id, json: client.json)) }
        if client.json { printJSON(bytes) } else { print(try api.decode(TaskRecord.self, bytes).state.rawValue) }
    }
}

struct TaskStopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a task (SIGTERM, then SIGKILL after the grace period).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String
    @Option(help: ArgumentHelp("Seconds between SIGTERM and SIGKILL (default 10).", valueName: "seconds")) var grace: Double?

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("POST", "/tasks/\(id)/stop" + (grace.map { "?grace=\($0)" } ?? ""))
        if client.json { printJSON(bytes) } else { print("stopping \(id)") }
    }
}

struct TaskDeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a task that is not active.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String

    func run() throws {
        _ = try client.client().send("DELETE", "/tasks/\(id)")
        if !client.json { print("deleted \(id)") }
    }
}

struct TaskResultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "results", abstract: "How the task's last run ended.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/tasks/\(id)/results")
        if client.json { return printJSON(bytes) }
        let r = try api.decode(TaskResult.self, bytes)
        var lines = [("State", r.state.rawValue), ("Exit code", r.exitCode.map(String.init) ?? "-"), ("Proplet", r.propletId), ("Attempt", String(r.attempt))]
        if let s = r.signal { lines.append(("Signal", String(s))) }
        if r.oomKilled { lines.append(("OOM killed", "yes")) }
        if r.timedOut { lines.append(("Timed out", "yes")) }
        if let e = r.error { lines.append(("Error", e)) }
        if let s = r.startedAt, let f = r.finishedAt { lines.append(("Runtime", String(format: "%.3fs", f - s))) }
        if let cpu = r.usage.cpuUsec { lines.append(("CPU", String(format: "%.3fs", Double(cpu) / 1e6))) }
        if let mem = r.usage.memoryPeakBytes { lines.append(("Memory peak", ByteSize(bytes: mem).description)) }
        printFields(lines)
    }
}

struct TaskWaitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wait", abstract: "Follow a task to its end, print its output and exit with its exit code.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String

    func run() throws {
        throw ExitCode(try waitForTask(try client.client(), id: id, json: client.json))
    }
}

struct TaskLogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print the task's kept stdout and stderr (--follow: as they come).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String
    @Flag(name: [.short, .long], help: "Keep printing output until the task ends.") var follow = false

    func run() throws {
        let api = try client.client()
        if follow {
            try api.stream("/tasks/\(id)/logs?follow=true") { line in
                let block = try api.decode(LogBlock.self, line)
                if block.stream == .stdout { writeOut(block.data) } else { printError(block.data, terminator: "") }
            }
            return
        }
        let bytes = try api.send("GET", "/tasks/\(id)/logs")
        if client.json { return printJSON(bytes) }
        let logs = try api.decode(TaskLogs.self, bytes)
        writeOut(logs.stdout)
        printError(logs.stderr, terminator: "")
    }
}

func writeOut(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// Follows a task to its end, showing phase changes on stderr, then prints its output and
/// returns the exit status for the CLI: the task's exit code, or 125 when it could not run.
/// Survives a manager restart: the watch is opened again until the task ends.
func waitForTask(_ api: ManagerClient, id: String, json: Bool) throws -> Int32 {
    var last = ""
    var final: TaskRecord?
    var failures = 0
    // On a terminal, the line of the current phase is redrawn as a pull goes on; elsewhere a line per change.
    let terminal = isatty(2) != 0
    var lineOpen = false
    defer { if lineOpen { printError("") } }
    while final == nil {
        do {
            try api.stream("/tasks/\(id)/watch") { line in
                let t = try api.decode(TaskRecord.self, line)
                let shown = [t.state.rawValue, t.phase ?? "", t.assignedProplet ?? "", t.reason ?? ""].joined(separator: "|")
                if (shown != last || (terminal && t.pull != nil)) && !json && !t.state.isTerminal {
                    var text = t.state.rawValue
                    if t.state == .scheduled || t.state == .running, let p = t.assignedProplet { text += " on \(p)" }
                    if let phase = t.phase, t.state == .scheduled { text += " (\(phase))" }
                    if let reason = t.reason, !t.state.isTerminal { text += ": \(reason)" }
                    if terminal {
                        if let pull = t.pull, pull.totalBytes > 0 {
                            text += " " + PullProgressDisplay.bar(Double(pull.receivedBytes) / Double(pull.totalBytes), width: 20)
                                + " \(ByteSize(bytes: pull.receivedBytes)) / \(ByteSize(bytes: pull.totalBytes))"
                        }
                        // A new phase keeps the line before it; a pull's progress redraws its own.
                        printError((lineOpen && shown != last ? "\n" : "\r\u{1B}[K") + "task \(id.prefix(8)): \(text)", terminator: "")
                        lineOpen = true
                    } else {
                        printError("task \(id.prefix(8)): \(text)")
                    }
                }
                last = shown
                if t.state.isTerminal { final = t }
            }
            failures = 0
        } catch let error as ClientError where error.status == 0 || error.status >= 500 {
            failures += 1
            if failures > 60 { throw error }
        }
        if final == nil { Thread.sleep(forTimeInterval: 0.5) }
    }
    guard let t = final else { return 125 }
    if lineOpen {
        printError("")
        lineOpen = false
    }
    if json {
        printJSON(try api.send("GET", "/tasks/\(id)"))
    } else {
        let logs = (try? api.decode(TaskLogs.self, try api.send("GET", "/tasks/\(id)/logs"))) ?? TaskLogs()
        writeOut(t.result?.stdoutTail ?? logs.stdout)
        printError(t.result?.stderrTail ?? logs.stderr, terminator: "")
    }
    switch t.state {
    case .completed: return 0
    default:
        if !json { printError("task \(id.prefix(8)): \(t.state.rawValue)\(t.reason.map { ": \($0)" } ?? "")") }
        if t.result?.timedOut == true { return 124 }  // as `propeller run --timeout`
        if let code = t.result?.exitCode, t.result?.error == nil || code != 0 { return code == 0 ? 1 : code }
        return 125
    }
}

/// `propeller task outputs ID`: the files a task left in its `--output` directory.
struct TaskOutputsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "outputs", abstract: "List the files of a task's --output directory (kept on its proplet).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/tasks/\(id)/outputs")
        if client.json { return printJSON(bytes) }
        struct Listing: Decodable { var files: [OutputFile] }
        print(table(["PATH", "SIZE"], try api.decode(Listing.self, bytes).files.map { [$0.path, "\($0.sizeBytes)"] }))
    }
}

/// `propeller task cp ID:PATH LOCAL`: a file of a task's outputs, byte for byte.
struct TaskCopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cp", abstract: "Copy a file of a task's --output directory: task cp ID:/out/file ./local (- for stdout).")
    @OptionGroup var client: ClientOptions
    @Argument(help: ArgumentHelp("The task and the file: ID:PATH, PATH inside its output directory or absolute in the task.", valueName: "id:path")) var source: String
    @Argument(help: ArgumentHelp("Where to write it (- for stdout).", valueName: "local")) var destination: String

    func run() throws {
        guard let colon = source.firstIndex(of: ":") else { throw ValidationError("expected ID:PATH, not \(source)") }
        let id = String(source[..<colon])
        var path = String(source[source.index(after: colon)...])
        let api = try client.client()
        // An absolute path is in the task: made relative to its output directory.
        if path.hasPrefix("/") {
            struct Output: Decodable { var output: String? }
            guard let root = try api.decode(Output.self, try api.send("GET", "/tasks/\(id)")).output else {
                throw ValidationError("task \(id) has no output directory")
            }
            guard path == root || path.hasPrefix(root + "/") else { throw ValidationError("\(path) is not in task \(id)'s output directory \(root)") }
            path = String(path.dropFirst(root.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        }
        let encoded = path.split(separator: "/").map { $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? String($0) }.joined(separator: "/")
        if destination == "-" { return try api.download("/tasks/\(id)/outputs/\(encoded)", to: 1) }
        let temporary = destination + ".part"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        do {
            try api.download("/tasks/\(id)/outputs/\(encoded)", to: fd)
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, destination) == 0 else { throw ValidationError("cannot write \(destination): \(String(cString: strerror(errno)))") }
    }
}
