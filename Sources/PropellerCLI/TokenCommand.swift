import ArgumentParser
import Foundation
import PropellerCore
import PropellerRunCLI
import PropellerManager

/// `propeller token`: the manager's API tokens.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Make, list, rotate and revoke API tokens.",
        discussion: """
        The manager keeps only each token's SHA-256; a new token's secret is printed once. A \
        revoked token stops working at once. Each token carries a role: admin (everything), \
        operator (the fleet: proplets, drain, volumes), developer (tasks, exec, actors, secrets), \
        viewer (reads what a developer sees) or invoker (posts messages to actors). SECURITY.md \
        has the whole table.
        """,
        subcommands: [TokenCreateCommand.self, TokenListCommand.self, TokenRotateCommand.self, TokenRevokeCommand.self, TokenWhoAmICommand.self,
                      TokenHashCommand.self]
    )
}

struct TokenCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Make a token and print its secret (shown this once).",
        discussion: "With --namespace the role holds in that namespace alone (and never over the cluster: proplets, tokens, namespaces, the audit log); without, everywhere."
    )
    @OptionGroup var client: ClientOptions
    @Argument(help: "A name that says what uses it.") var name: String
    @Option(help: "What it may do: admin, operator, developer, viewer or invoker.") var role: String
    @Option(help: "The user or service it belongs to (default: its name).") var identity: String?
    @Option(help: "Refuse it after this long: 12h, 30d (default: never).") var expires: String?

    func validate() throws {
        guard Role(rawValue: role) != nil else { throw ValidationError("unknown role \"\(role)\": one of \(Role.names)") }
        if let expires { _ = try lifetime(expires) }
    }

    private func lifetime(_ text: String) throws -> Double {
        do {
            return try DurationParsing.seconds(text)
        } catch {
            throw ValidationError("--expires \(text): \(error)")
        }
    }

    func run() throws {
        let api = try client.client()
        var body: [String: Any] = ["name": name, "role": role]
        if let identity { body["identity"] = identity }
        // --namespace (or PROPELLER_NAMESPACE) binds the token's role to that namespace.
        if let namespace = api.namespace { body["namespace"] = namespace }
        if let expires { body["expires_in_seconds"] = try lifetime(expires) }
        let bytes = try api.send("POST", "/tokens", body: try JSONSerialization.data(withJSONObject: body).map { $0 })
        if client.json { return printJSON(bytes) }
        struct Created: Decodable { var id: String; var token: String; var expiresAt: Double? }
        let created = try api.decode(Created.self, bytes)
        let until = created.expiresAt.map { ", valid until \(WallClock.iso8601($0))" } ?? ""
        printError("token \(created.id) (\(name), role \(role)\(until)); the secret below is shown once:")
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
        let now = WallClock.now()
        printList(bytes, format, [Column("ID"), Column("NAME"), Column("ROLE"), Column("NAMESPACE"), Column("IDENTITY", wide: true), Column("CREATED"),
                                  Column("EXPIRES"), Column("STATUS")]) {
            tokens.map { t in
                let status = t.revokedAt.map { "revoked \(age($0))" } ?? ((t.expiresAt ?? .infinity) <= now ? "expired" : "active")
                return [t.id, t.name, t.role.rawValue, t.namespace ?? "*", t.identity, t.createdAt == 0 ? "config" : age(t.createdAt),
                        t.expiresAt.map { $0 > now ? "in \(span($0 - now))" : age($0) } ?? "never", status]
            }
        }
    }
}

struct TokenRotateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Give a token a new secret (printed once); the old one stops working at once.",
        discussion: "Any token may rotate itself; rotating another takes an admin's."
    )
    @OptionGroup var client: ClientOptions
    @Argument(help: "Token id (from `propeller token list` or `propeller token whoami`).") var id: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("POST", "/tokens/\(id)/rotate")
        if client.json { return printJSON(bytes) }
        struct Rotated: Decodable { var token: String }
        let rotated = try api.decode(Rotated.self, bytes)
        printError("token \(id) rotated; its new secret is shown once:")
        print(rotated.token)
    }
}

struct TokenWhoAmICommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show the token in use: its identity, role and permissions.")
    @OptionGroup var client: ClientOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/whoami")
        if client.json { return printJSON(bytes) }
        struct Me: Decodable { var tokenId: String; var identity: String; var role: String; var namespace: String?; var permissions: [String]; var expiresAt: Double? }
        let me = try api.decode(Me.self, bytes)
        printFields([("Token", me.tokenId.isEmpty ? "-" : me.tokenId), ("Identity", me.identity), ("Role", me.role),
                     ("Namespace", me.namespace ?? "* (every namespace and the cluster)"),
                     ("Permissions", me.permissions.joined(separator: " ")), ("Expires", me.expiresAt.map(WallClock.iso8601) ?? "never")])
    }
}

struct TokenRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token, or every token of an identity: they stop working at once.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Token id (from `propeller token list`).") var id: String?
    @Option(help: ArgumentHelp("Revoke every live token of this identity instead (someone who left, a leaked CI secret).", valueName: "name"))
    var identity: String?

    func validate() throws {
        if (id == nil) == (identity == nil) { throw ValidationError("give a token id or --identity NAME") }
    }

    func run() throws {
        let api = try client.client()
        if let identity {
            let bytes = try api.send("DELETE", "/tokens?identity=\(identity.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? identity)")
            if client.json { return printJSON(bytes) }
            struct Revoked: Decodable { var revoked: [APIToken]; var kept: [String] }
            let r = try api.decode(Revoked.self, bytes)
            print("revoked \(r.revoked.count) token\(r.revoked.count == 1 ? "" : "s") of \(identity): \(r.revoked.map(\.id).joined(separator: " "))")
            if !r.kept.isEmpty { printError("kept \(r.kept.joined(separator: " ")): the token making this request (revoke it with another)") }
            return
        }
        let bytes = try api.send("DELETE", "/tokens/\(id ?? "")")
        if client.json { return printJSON(bytes) }
        print("revoked \(id ?? "")")
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
