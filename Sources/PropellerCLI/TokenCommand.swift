import ArgumentParser
import Foundation
import PropellerCore
import PropellerRunCLI
import PropellerManager

/// `propeller token`: the manager's API tokens.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Make, list and revoke API tokens.",
        discussion: """
        The manager keeps only each token's SHA-256; a new token's secret is printed once. A \
        revoked token stops working at once.
        """,
        subcommands: [TokenCreateCommand.self, TokenListCommand.self, TokenRevokeCommand.self, TokenHashCommand.self]
    )
}

struct TokenCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Make a token and print its secret (shown this once).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "A name that says who or what uses it.") var name: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("POST", "/tokens", body: try JSONSerialization.data(withJSONObject: ["name": name]).map { $0 })
        if client.json { return printJSON(bytes) }
        struct Created: Decodable { var id: String; var token: String }
        let created = try api.decode(Created.self, bytes)
        printError("token \(created.id) (\(name)); the secret below is shown once:")
        print(created.token)
    }
}

struct TokenListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tokens (never their secrets).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/tokens")
        struct List: Decodable { var tokens: [APIToken] }
        let format = list.format(client)
        let tokens = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).tokens
        printList(bytes, format, [Column("ID"), Column("NAME"), Column("CREATED"), Column("STATUS")]) {
            tokens.map { t in
                [t.id, t.name, t.createdAt == 0 ? "config" : age(t.createdAt), t.revokedAt == nil ? "active" : "revoked \(age(t.revokedAt))"]
            }
        }
    }
}

struct TokenRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token: it stops working at once.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Token id (from `propeller token list`).") var id: String

    func run() throws {
        let bytes = try client.client().send("DELETE", "/tokens/\(id)")
        if client.json { return printJSON(bytes) }
        print("revoked \(id)")
    }
}

struct TokenHashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash",
        abstract: "Read a token on stdin and print the sha256:HEX that the manager's --api-token-sha256 takes."
    )

    func run() throws {
        guard let line = readLine(strippingNewline: true)?.trimmingWhitespace(), !line.isEmpty else {
            throw ValidationError("no token on stdin")
        }
        print("sha256:" + APITokens.hash(line))
    }
}
