import ArgumentParser
import Foundation
import PropellerCore
import PropellerManager
import PropellerRunCLI

/// `propeller secret`: values kept sealed in the manager's store, given to tasks as files.
struct SecretCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secret",
        abstract: "Keep secrets for tasks: create, list, remove.",
        discussion: """
        A secret's value goes in once and never comes back out of the API: the manager keeps it \
        sealed (AES-256-GCM, --secrets-key-file) and sends it only to the proplet that runs a task \
        asking for it (`task create … --secret NAME[:/path]`), which puts it on a read-only tmpfs \
        file in the task, /run/secrets/NAME by default.
        """,
        subcommands: [SecretCreateCommand.self, SecretListCommand.self, SecretRemoveCommand.self]
    )
}

struct SecretCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Store a secret from a file or from stdin (up to 64K).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Its name: letters, digits, '_', '.' and '-'.") var name: String
    @Option(name: .customLong("from-file"), help: ArgumentHelp("Read the value from this file.", valueName: "file")) var fromFile: String?
    @Flag(name: .customLong("from-stdin"), help: "Read the value from stdin.") var fromStdin = false

    func validate() throws {
        guard (fromFile != nil) != fromStdin else { throw ValidationError("give exactly one of --from-file FILE and --from-stdin") }
        guard VolumeName.isValid(name) else { throw ValidationError("invalid name \"\(name)\": 1 to 64 letters, digits, '_', '.' or '-'") }
    }

    func run() throws {
        let value: Data
        if let fromFile {
            guard let data = FileManager.default.contents(atPath: fromFile) else { throw ValidationError("cannot read \(fromFile)") }
            value = data
        } else {
            value = FileHandle.standardInput.readDataToEndOfFile()
        }
        guard !value.isEmpty, value.count <= SecretVault.maxBytes else {
            throw ValidationError("the value must be 1 byte to 64K, not \(value.count) bytes")
        }
        let api = try client.client()
        let bytes = try api.send("POST", "/secrets", body: [UInt8](try JSONSerialization.data(withJSONObject: ["name": name, "value": value.base64EncodedString()])))
        if client.json { return printJSON(bytes) }
        print(name)
    }
}

struct SecretListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List secrets: names, sizes and ages (never values).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/secrets")
        struct List: Decodable { var secrets: [SecretInfo] }
        let format = list.format(client)
        let secrets = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).secrets
        printList(bytes, format, [Column("NAME"), Column("SIZE"), Column("CREATED")]) { secrets.map { [$0.name, "\($0.sizeBytes)", age($0.createdAt)] } }
    }
}

struct SecretRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a secret (tasks that ask for it later fail to start).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Its name.") var name: String

    func run() throws {
        _ = try client.client().send("DELETE", "/secrets/\(name)")
        if !client.json { print("removed \(name)") }
    }
}
