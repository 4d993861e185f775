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
        subcommands: [NamespaceCreateCommand.self, NamespaceListCommand.self, NamespaceGetCommand.self, NamespaceDeleteCommand.self]
    )
}

struct NamespaceCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Make a namespace (a DNS label: team-a).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Its name.") var name: String

    func run() throws {
        let bytes = try client.client().send("POST", "/namespaces", body: try JSONSerialization.data(withJSONObject: ["name": name]).map { $0 })
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
        struct View: Decodable { var name: String; var createdAt: Double; var usage: NamespaceUsage }
        let v = try api.decode(View.self, bytes)
        printFields([("Name", v.name), ("Created", v.createdAt == 0 ? "-" : age(v.createdAt)),
                     ("Tasks", "\(v.usage.tasks) (\(v.usage.activeTasks) active)"),
                     ("Reserved", "\(Double(v.usage.cpuMillis) / 1000) CPU, \(ByteSize(bytes: v.usage.memoryBytes)) memory"),
                     ("Actors", "\(v.usage.actors) (\(v.usage.workers) workers)"), ("Secrets", "\(v.usage.secrets)")])
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
