import ArgumentParser
import Foundation
import PropellerCore
import PropellerManager

/// `propeller namespace`: the namespaces that tasks, actors and secrets belong to.
struct NamespaceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "namespace",
        abstract: "Make, list, show and delete namespaces.",
        discussion: """
        Tasks, actors (with their executions and workers) and secrets belong to one namespace: \
        `default` unless a command is given --namespace (or PROPELLER_NAMESPACE). A token made \
        with --namespace works in that namespace alone. Making and deleting namespaces takes a \
        cluster-wide admin token.
        """,
        subcommands: [NamespaceCreateCommand.self, NamespaceListCommand.self, NamespaceGetCommand.self, NamespaceQuotaCommand.self,
                      NamespaceDeleteCommand.self]
    )
}

/// `--cpus 4 --memory 8G --tasks 10 --actors 5`: a namespace's quota.
struct QuotaOptions: ParsableArguments {
    @Option(help: "CPUs its placed tasks may reserve at once (1.5).") var cpus: Double?
    @Option(help: ArgumentHelp("Memory its placed tasks may reserve at once (8G).", valueName: "size")) var memory: String?
    @Option(help: "Tasks it may have placed at once.") var tasks: Int?
    @Option(help: "Actors it may register.") var actors: Int?
    @Option(help: "Actor workers it may have placed at once (their CPU and memory count in --cpus and --memory too).") var workers: Int?

    var isEmpty: Bool { cpus == nil && memory == nil && tasks == nil && actors == nil && workers == nil }

    func json() throws -> [String: Any] {
        var q: [String: Any] = [:]
        if let cpus {
            guard cpus.isFinite, cpus >= 0, cpus <= 1_000_000 else { throw ValidationError("--cpus: 0 to 1000000") }
            q["cpu_millis"] = Int((cpus * 1000).rounded())
        }
        if let memory {
            do { q["memory_bytes"] = try ByteSize(parsing: memory).bytes } catch { throw ValidationError("--memory \(memory): \(error)") }
        }
        if let tasks { guard tasks >= 0 else { throw ValidationError("--tasks: 0 or more") }; q["running_tasks"] = tasks }
        if let actors { guard actors >= 0 else { throw ValidationError("--actors: 0 or more") }; q["actors"] = actors }
        if let workers { guard workers >= 0 else { throw ValidationError("--workers: 0 or more") }; q["workers"] = workers }
        return q
    }
}

struct NamespaceCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Make a namespace (a DNS label: team-a), with a quota if given.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var quota: QuotaOptions
    @Argument(help: "Its name.") var name: String

    func run() throws {
        var body: [String: Any] = ["name": name]
        if !quota.isEmpty { body["quota"] = try quota.json() }
        let bytes = try client.client().send("POST", "/namespaces", body: try JSONSerialization.data(withJSONObject: body).map { $0 })
        if client.json { return printJSON(bytes) }
        print(name)
    }
}

struct NamespaceListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List namespaces.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/namespaces")
        struct Item: Decodable { var name: String; var createdAt: Double }
        struct List: Decodable { var namespaces: [Item] }
        let format = list.format(client)
        let items = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).namespaces
        printList(bytes, format, [Column("NAME"), Column("CREATED")]) {
            items.map { [$0.name, $0.createdAt == 0 ? "-" : age($0.createdAt)] }
        }
    }
}

struct NamespaceGetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show a namespace and what it holds and uses now.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Its name.") var name: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/namespaces/\(name)")
        if client.json { return printJSON(bytes) }
        struct View: Decodable { var name: String; var createdAt: Double; var quota: NamespaceQuota?; var usage: NamespaceUsage }
        let v = try api.decode(View.self, bytes)
        func of<T>(_ limit: T?, _ show: (T) -> String) -> String { limit.map { " of \(show($0))" } ?? "" }
        printFields([("Name", v.name), ("Created", v.createdAt == 0 ? "-" : age(v.createdAt)),
                     ("Tasks", "\(v.usage.tasks), \(v.usage.activeTasks) active\(of(v.quota?.runningTasks) { "\($0) placed at once" })"),
                     ("CPU", NamespaceQuota.cpus(v.usage.cpuMillis) + of(v.quota?.cpuMillis) { NamespaceQuota.cpus($0) }),
                     ("Memory", "\(ByteSize(bytes: v.usage.memoryBytes))" + of(v.quota?.memoryBytes) { "\(ByteSize(bytes: $0))" }),
                     ("Actors", "\(v.usage.actors)\(of(v.quota?.actors) { "\($0)" })"), ("Workers", "\(v.usage.workers)\(of(v.quota?.workers) { "\($0)" })"),
                     ("Secrets", "\(v.usage.secrets)")])
    }
}

struct NamespaceQuotaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota", abstract: "Set a namespace's quota (the options given; --clear for none).",
        discussion: "Tasks over it wait with the reason (\"namespace team-a is at its memory quota: 7.5 GiB of 8 GiB in use\"); a task larger than the quota is refused."
    )
    @OptionGroup var client: ClientOptions
    @OptionGroup var quota: QuotaOptions
    @Flag(help: "No limit at all.") var clear = false
    @Argument(help: "Its name.") var name: String

    func validate() throws {
        if clear == !quota.isEmpty { throw ValidationError(clear ? "--clear takes no limits" : "give --cpus, --memory, --tasks, --actors or --workers, or --clear") }
    }

    func run() throws {
        let body: [String: Any] = clear ? [:] : ["quota": try quota.json()]
        let bytes = try client.client().send("PUT", "/namespaces/\(name)", body: try JSONSerialization.data(withJSONObject: body).map { $0 })
        if client.json { return printJSON(bytes) }
        print("quota of \(name) set")
    }
}

struct NamespaceDeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete an empty namespace.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Its name.") var name: String

    func run() throws {
        _ = try client.client().send("DELETE", "/namespaces/\(name)")
        if !client.json { print("deleted \(name)") }
    }
}
