import ArgumentParser
import Foundation
import PropellerCore
import PropellerRunCLI
import PropellerManager

/// `propeller actor`: functions as a service on the manager's actors API.
struct ActorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "actor",
        abstract: "Register actors (an image) and send them messages; each message runs as an execution.",
        discussion: """
        An execution runs on a warm worker (the image already on a proplet, its rootfs unpacked, \
        its resources reserved), so it is one container start. The container sees the message in \
        MSG (text and JSON) and always in the file named by PROPELLER_MESSAGE_FILE, writes its \
        results to the file named by PROPELLER_RESULTS, and a stateful actor's state is the JSON \
        file named by PROPELLER_STATE (what it leaves there is the next execution's state).
        """,
        subcommands: [ActorCreateCommand.self, ActorListCommand.self, ActorGetCommand.self, ActorUpdateCommand.self, ActorDeleteCommand.self,
                      ActorSendCommand.self, ActorExecutionsCommand.self, ActorLogsCommand.self, ActorResultsCommand.self, ActorWorkersCommand.self,
                      ActorNonceCommand.self, ActorGrantCommand.self, ActorUngrantCommand.self, ActorPermissionsCommand.self]
    )
}

/// The spec options shared by create and update.
struct ActorSpecOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Image reference (registry/repo:tag).", valueName: "ref")) var image: String?
    @Option(help: "What the actor does.") var description: String?
    @Option(name: .customLong("env"), help: ArgumentHelp("Default environment variable for every execution (repeatable).", valueName: "KEY=VALUE"))
    var env: [String] = []
    @Option(help: ArgumentHelp("Memory reserved and enforced per worker (default: the manager's).", valueName: "size")) var memory: String?
    @Option(help: ArgumentHelp("CPU per worker, in thousandths of a core.", valueName: "millis")) var cpu: UInt64?
    @Option(name: .customLong("min-workers"), help: "Workers kept warm when idle (default 1; 0 scales to zero).") var minWorkers: Int?
    @Option(name: .customLong("max-workers"), help: "Most workers the autoscaler runs (default 1).") var maxWorkers: Int?
    @Flag(help: "A stateful actor: one worker, a JSON state handed to each execution.") var stateful = false
    @Option(help: ArgumentHelp("Kill an execution after this long.", valueName: "duration")) var timeout: String?
    @Option(name: .customLong("label"), help: ArgumentHelp("A label (repeatable).", valueName: "KEY=VALUE")) var labels: [String] = []
    @Option(help: ArgumentHelp("A volume for every execution (repeatable), as for tasks.", valueName: "name:/path[:ro]")) var volume: [String] = []
    @Option(help: ArgumentHelp("A tmpfs for every execution (repeatable).", valueName: "/path[:size=64M]")) var tmpfs: [String] = []
    @Option(help: ArgumentHelp("A secret as a read-only file in every execution (repeatable).", valueName: "name[:/path]")) var secret: [String] = []
    @Option(help: ArgumentHelp("Every execution's network: none (default), host, bridge or one its proplet offers.", valueName: "network")) var network: String?
    @Option(name: .customLong("api-token-role"),
            help: ArgumentHelp("Give each execution an API token of this role (developer, viewer, invoker) in the actor's namespace, as /run/secrets/propeller-api-token, revoked when the execution ends (\"\" takes it away).", valueName: "role"))
    var apiTokenRole: String?
    @Argument(parsing: .postTerminator, help: "Command replacing the image's Cmd (after --).") var command: [String] = []

    func body(name: String?) throws -> [String: Any] {
        var b: [String: Any] = [:]
        if let name { b["name"] = name }
        if let image { b["image"] = image }
        if let description { b["description"] = description }
        if !env.isEmpty { b["default_env"] = try pairs(env, "--env") }
        if !labels.isEmpty { b["labels"] = try pairs(labels, "--label") }
        var resources: [String: Any] = [:]
        if let memory {
            guard let size = try? ByteSize(parsing: memory) else { throw ValidationError("invalid --memory \"\(memory)\"") }
            resources["memory_bytes"] = size.bytes
        }
        if let cpu { resources["cpu_millis"] = cpu }
        if !resources.isEmpty { b["resources"] = resources }
        if let minWorkers { b["min_workers"] = minWorkers }
        if let maxWorkers { b["max_workers"] = maxWorkers }
        if stateful { b["stateless"] = false }
        if let timeout {
            do { b["timeout_seconds"] = Double(try DurationParsing.parse(timeout).components.seconds) } catch { throw ValidationError("invalid --timeout: \(error)") }
        }
        if !command.isEmpty { b["command"] = command }
        if let network { b["network"] = network }
        if let apiTokenRole { b["api_token_role"] = apiTokenRole }
        do {
            let volumes = try volume.map(VolumeMount.init(parsing:))
            if !volumes.isEmpty {
                b["volumes"] = volumes.map { v in
                    (["name": v.name, "target": v.target, "read_only": v.readOnly] as [String: Any]).merging(v.sizeBytes.map { ["size_bytes": $0] } ?? [:]) { a, _ in a }
                }
            }
            let mounts = try tmpfs.map(TmpfsMount.init(parsing:))
            if !mounts.isEmpty { b["tmpfs"] = mounts.map { t in ["target": t.target].merging(t.sizeBytes.map { ["size_bytes": $0] } ?? [:]) { a, _ in a } } }
            let secrets = try secret.map(SecretMount.init(parsing:))
            if !secrets.isEmpty { b["secrets"] = secrets.map { ["name": $0.name, "target": $0.target] } }
        } catch let error as PropellerError {
            throw ValidationError(error.message)
        }
        return b
    }

    private func pairs(_ list: [String], _ flag: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for item in list {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else { throw ValidationError("invalid \(flag) \"\(item)\": expected KEY=VALUE") }
            out[String(item[..<eq])] = String(item[item.index(after: eq)...])
        }
        return out
    }
}

private func json(_ object: [String: Any]) throws -> [UInt8] { Array(try JSONSerialization.data(withJSONObject: object)) }

private func printActor(_ bytes: [UInt8], client: ClientOptions, api: ManagerClient) throws {
    if client.json { return printJSON(bytes) }
    let a = try api.decode(ActorRecord.self, bytes)
    printFields([("id", a.id), ("name", a.spec.name), ("image", a.spec.image), ("status", a.status.rawValue + (a.message.map { " (\($0))" } ?? "")),
                 ("revision", String(a.revision)), ("workers", "\(a.spec.minWorkers)..\(a.spec.maxWorkers)"), ("stateless", String(a.spec.stateless))])
}

struct ActorCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Register an actor; prints its id (--json: the actor).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor name.") var name: String
    @OptionGroup var spec: ActorSpecOptions

    func run() throws {
        guard spec.image != nil else { throw ValidationError("--image is required") }
        let api = try client.client()
        let bytes = try api.send("POST", "/actors", body: try json(try spec.body(name: name)))
        if client.json { return printJSON(bytes) }
        print(try api.decode(ActorRecord.self, bytes).id)
    }
}

struct ActorListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List actors.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/actors?limit=1000")
        struct Page: Decodable { var actors: [ActorRecord] }
        let format = list.format(client)
        let page = format == .json || format == .yaml ? nil : try api.decode(Page.self, bytes)
        printList(bytes, format, [Column("ID"), Column("NAME"), Column("IMAGE"), Column("STATUS"), Column("WORKERS"), Column("REVISION", wide: true),
                                  Column("CPU", wide: true), Column("MEMORY", wide: true), Column("CREATED")]) {
            (page?.actors ?? []).map { a in
                [a.id, a.spec.name, a.spec.image, a.status.rawValue, "\(a.spec.minWorkers)..\(a.spec.maxWorkers)", String(a.revision),
                 a.spec.resources.cpuMillis == 0 ? "-" : String(Double(a.spec.resources.cpuMillis) / 1000),
                 a.spec.resources.memoryBytes == 0 ? "-" : "\(ByteSize(bytes: a.spec.resources.memoryBytes))", age(a.createdAt)]
            }
        }
    }
}

struct ActorGetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show one actor.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var id: String

    func run() throws {
        let api = try client.client()
        try printActor(try api.send("GET", "/actors/\(id)"), client: client, api: api)
    }
}

struct ActorUpdateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Change an actor; a new image replaces its workers, queued messages wait for them.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var id: String
    @Option(help: "New name.") var name: String?
    @OptionGroup var spec: ActorSpecOptions

    func run() throws {
        let api = try client.client()
        try printActor(try api.send("PUT", "/actors/\(id)", body: try json(try spec.body(name: name))), client: client, api: api)
    }
}

struct ActorDeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete an actor: its workers stop, its inbox and executions go.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var id: String

    func run() throws {
        _ = try client.client().send("DELETE", "/actors/\(id)")
        if !client.json { print("deleted \(id)") }
    }
}

struct ActorSendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "send", abstract: "Post a message; prints the execution id, or with --sync the execution's results.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var actor: String
    @Argument(help: "The message (text); or use --file.") var message: String?
    @Option(help: ArgumentHelp("Send this file's bytes (application/octet-stream unless --content-type).", valueName: "file")) var file: String?
    @Option(name: .customLong("content-type"), help: "The message's content type (default text/plain, or application/octet-stream with --file).")
    var contentType: String?
    @Option(name: .customLong("var"), help: ArgumentHelp("An environment variable for this execution (repeatable).", valueName: "KEY=VALUE"))
    var vars: [String] = []
    @Flag(help: "Wait for the execution and print its results; exits 1 when it failed.") var sync = false
    @Option(help: ArgumentHelp("How long --sync waits (seconds, default 30).", valueName: "seconds")) var timeout: Int = 30

    func validate() throws {
        if (message == nil) == (file == nil) { throw ValidationError("give a message or --file, not both") }
    }

    func run() throws {
        let api = try client.client()
        let body: [UInt8]
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            body = Array(data)
        } else {
            body = Array((message ?? "").utf8)
        }
        var query: [String] = []
        for v in vars {
            guard let eq = v.firstIndex(of: "="), eq != v.startIndex else { throw ValidationError("invalid --var \"\(v)\": expected KEY=VALUE") }
            query.append(String(v[..<eq]) + "=" + (String(v[v.index(after: eq)...]).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))
        }
        if sync { query += ["sync=true", "timeout=\(timeout)"] }
        let type = contentType ?? (file == nil ? "text/plain" : "application/octet-stream")
        let path = "/actors/\(actor)/messages" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        let answer = try api.exchange("POST", path, body: body, contentType: type, stallSeconds: timeout + 30)
        if sync && answer.status == 200 {
            FileHandle.standardOutput.write(Data(answer.body))
            let status = answer.headers["x-propeller-execution-status"] ?? "?"
            if status != "complete" {
                printError("execution \(answer.headers["x-propeller-execution-id"] ?? "?") ended in \(status): \(answer.headers["x-propeller-execution-error"] ?? "")")
                throw ExitCode(1)
            }
            return
        }
        if client.json { return printJSON(answer.body) }
        struct Accepted: Decodable { var executionId: String }
        let accepted = try api.decode(Accepted.self, answer.body)
        if sync { printError("execution \(accepted.executionId) has not ended after \(timeout)s") }
        print(accepted.executionId)
    }
}

struct ActorExecutionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "executions", abstract: "An actor's executions (newest first) with totals, or one of them.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var actor: String
    @Argument(help: "Execution id: show that one.") var execution: String?
    @Option(help: "At most this many.") var limit: Int = 100
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        if let execution {
            let bytes = try api.send("GET", "/actors/\(actor)/executions/\(execution)")
            if client.json { return printJSON(bytes) }
            let e = try api.decode(ExecutionRecord.self, bytes)
            printFields([("id", e.id), ("status", e.status.rawValue), ("attempt", String(e.attempt)), ("exit code", e.exitCode.map(String.init) ?? "-"),
                         ("error", e.error ?? "-"), ("worker", e.workerId ?? "-"), ("proplet", e.propletId ?? "-"),
                         ("runtime", e.runtime.map { String(format: "%.3fs", $0) } ?? "-"), ("cpu", e.cpuUsec.map { "\($0)µs" } ?? "-"),
                         ("memory peak", e.memoryPeakBytes.map { "\(ByteSize(bytes: $0))" } ?? "-")])
            return
        }
        let bytes = try api.send("GET", "/actors/\(actor)/executions?limit=\(limit)")
        let format = list.format(client)
        guard format != .json && format != .yaml else { return printList(bytes, format, []) { [] } }
        struct Page: Decodable { var total: Int; var totals: ExecutionTotals; var executions: [ExecutionRecord] }
        let page = try api.decode(Page.self, bytes)
        printList(bytes, format, [Column("ID"), Column("STATUS"), Column("EXIT"), Column("RUNTIME"), Column("WORKER"), Column("PROPLET", wide: true),
                                  Column("ATTEMPT", wide: true), Column("CPU", wide: true), Column("MEMORY PEAK", wide: true), Column("SUBMITTED")]) {
            page.executions.map { e in
                [e.id, e.status.rawValue, e.exitCode.map(String.init) ?? "-", e.runtime.map { String(format: "%.3fs", $0) } ?? "-", e.workerId ?? "-",
                 e.propletId ?? "-", String(e.attempt), e.cpuUsec.map { "\($0)µs" } ?? "-", e.memoryPeakBytes.map { "\(ByteSize(bytes: $0))" } ?? "-",
                 age(e.submittedAt)]
            }
        }
        print("\(page.totals.count) executions: \(page.totals.complete) complete, \(page.totals.error) error, runtime \(String(format: "%.3f", page.totals.runtime))s, "
              + "cpu \(page.totals.cpuUsec)µs, memory peak \(ByteSize(bytes: page.totals.memoryPeakBytes))")
    }
}

struct ActorLogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "An execution's kept stdout and stderr.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var actor: String
    @Argument(help: "Execution id.") var execution: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/actors/\(actor)/executions/\(execution)/logs")
        if client.json { return printJSON(bytes) }
        let logs = try api.decode(TaskLogs.self, bytes)
        FileHandle.standardOutput.write(Data(logs.stdout.utf8))
        FileHandle.standardError.write(Data(logs.stderr.utf8))
    }
}

struct ActorResultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "results", abstract: "What an execution wrote to its results file, byte for byte.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var actor: String
    @Argument(help: "Execution id.") var execution: String

    func run() throws {
        FileHandle.standardOutput.write(Data(try client.client().send("GET", "/actors/\(actor)/executions/\(execution)/results")))
    }
}

struct ActorWorkersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workers", abstract: "An actor's workers; --scale N makes sure N exist.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Actor id.") var actor: String
    @Option(help: "Make sure at least this many workers exist (up to max_workers).") var scale: Int?
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try scale.map { try api.send("POST", "/actors/\(actor)/workers", body: try json(["num": $0])) } ?? api.send("GET", "/actors/\(actor)/workers")
        struct List: Decodable { var workers: [WorkerRecord] }
        let format = list.format(client)
        let workers = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).workers
        printList(bytes, format, [Column("ID"), Column("STATUS"), Column("PROPLET"), Column("EXECUTIONS"), Column("EXECUTION", wide: true),
                                  Column("CREATED", wide: true), Column("LAST USED")]) {
            workers.map { w in
                [w.id, w.status.rawValue + (w.reason.map { " (\($0))" } ?? ""), w.propletId ?? "-", String(w.executions), w.executionId ?? "-",
                 age(w.createdAt), age(w.lastUsedAt)]
            }
        }
    }
}
