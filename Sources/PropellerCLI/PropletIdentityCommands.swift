import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PropellerCore
import PropellerManager
import PropellerRunCLI

/// `propeller proplet add NAME`: a new proplet identity on the broker, made while it runs.
struct PropletAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add a proplet identity to the broker while it runs; prints (or writes) the proplet's config file, secret included, once.",
        discussion: "The manager must run with --broker-admin (dynsec or nats). Takes an admin's token: a proplet is given the tasks placed on it, their secrets included."
    )
    @OptionGroup var client: ClientOptions
    @Argument(help: "A name for the proplet (the machine it runs on, say).") var name: String
    @Option(help: ArgumentHelp("Write the config file here (made mode 600; an existing file is not replaced) instead of printing it.", valueName: "file"))
    var out: String?
    @Option(name: .customLong("only-namespace"), help: ArgumentHelp("Hold the proplet to this namespace's work (repeatable): the manager enforces it whatever the proplet is started with.", valueName: "name"))
    var namespaces: [String] = []

    func run() throws {
        let api = try client.client()
        // Refused before the identity is made: one made and then not written down is a user on
        // the broker that nobody can log in as.
        if let out, access(absolutePath(out), F_OK) == 0 {
            throw ValidationError("\(absolutePath(out)) exists: give --out a new file (it holds the proplet's secret)")
        }
        var body: [String: Any] = ["name": name]
        if !namespaces.isEmpty { body["namespaces"] = namespaces }
        let bytes = try api.send("POST", "/proplets", body: try JSONSerialization.data(withJSONObject: body).map { $0 })
        if client.json { return printJSON(bytes) }
        struct Added: Decodable { var id: String; var config: String }
        let added = try api.decode(Added.self, bytes)
        guard let out else {
            printError("proplet \(added.id) (\(name)) may log in to the broker now; its config file, shown once (start it with `propeller proplet --config FILE`):")
            print(added.config, terminator: "")
            return
        }
        let path = absolutePath(out)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            printError("proplet \(added.id) was added, but \(path) could not be made (\(reason)); revoke it with `propeller proplet revoke \(added.id)` and try again")
            throw ExitCode(1)
        }
        defer { close(fd) }
        let text = Array(added.config.utf8)
        guard text.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == text.count else {
            printError("proplet \(added.id) was added, but writing \(path) failed (\(String(cString: strerror(errno))))")
            throw ExitCode(1)
        }
        print("proplet \(added.id) (\(name)) added; its config file is \(path): start it with `propeller proplet --config \(path)`")
    }
}

/// `propeller proplet revoke ID`: off the broker at once, its work rescheduled.
struct PropletRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a proplet identity added with `proplet add`: the broker disconnects it now, its tasks are rescheduled, and it cannot log in again."
    )
    @OptionGroup var client: ClientOptions
    @Argument(help: "Proplet id (from `propeller proplet identities`).") var id: String

    func run() throws {
        let bytes = try client.client().send("POST", "/proplets/\(id)/revoke")
        if client.json { return printJSON(bytes) }
        print("revoked \(id): disconnected from the broker; its work goes elsewhere")
    }
}

/// `propeller proplet identities`: what `add` made and `revoke` took back.
struct PropletIdentitiesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "identities", abstract: "List the proplet identities added through the API (never their secrets).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/proplet-identities")
        struct List: Decodable { var identities: [PropletIdentity] }
        let format = list.format(client)
        let identities = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).identities
        printList(bytes, format, [Column("ID"), Column("NAME"), Column("CREATED"), Column("BY"), Column("STATUS")]) {
            identities.map { i in
                [i.id, i.name, age(i.createdAt), i.createdBy, i.revokedAt.map { "revoked \(age($0)) by \(i.revokedBy ?? "?")" } ?? "active"]
            }
        }
    }
}
