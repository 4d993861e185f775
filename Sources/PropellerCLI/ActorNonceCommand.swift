import ArgumentParser
import Foundation
import PropellerCore
import PropellerManager
import PropellerRunCLI

/// `propeller actor nonce`: capabilities on one actor for callers without a token.
struct ActorNonceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nonce",
        abstract: "Make, list and revoke an actor's nonces.",
        discussion: """
        A nonce lets an outside system (a webhook, a form) use one actor without an account: it \
        sends ?x-nonce=NONCE instead of a token, at one level (read; execute: post messages too; \
        update: change the actor too), for a number of uses or until it expires.
        """,
        subcommands: [ActorNonceCreateCommand.self, ActorNonceListCommand.self, ActorNonceRevokeCommand.self]
    )
}

struct ActorNonceCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Make a nonce and print it (shown this once).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The actor (id, name or id prefix).") var actor: String
    @Option(help: "read, execute (the default) or update.") var level = "execute"
    @Option(help: "How many requests it may make.") var uses: Int?
    @Option(help: "Refuse it after this long: 1h, 7d.") var expires: String?

    func validate() throws {
        guard ActorAccessLevel(rawValue: level) != nil else { throw ValidationError("--level: read, execute or update") }
        if uses == nil && expires == nil { throw ValidationError("give --uses, --expires or both: a nonce that never ends is a token") }
    }

    func run() throws {
        let api = try client.client()
        var body: [String: Any] = ["level": level]
        if let uses { body["max_uses"] = uses }
        if let expires {
            do { body["expires_in_seconds"] = try DurationParsing.seconds(expires) } catch { throw ValidationError("--expires \(expires): \(error)") }
        }
        let bytes = try api.send("POST", "/actors/\(actor)/nonces", body: try JSONSerialization.data(withJSONObject: body).map { $0 })
        if client.json { return printJSON(bytes) }
        struct Made: Decodable { var id: String; var actorId: String; var xNonce: String }
        let made = try api.decode(Made.self, bytes)
        printError("nonce \(made.id) on actor \(made.actorId) (\(level)); use it as ?x-nonce= (shown once):")
        print(made.xNonce)
    }
}

struct ActorNonceListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List an actor's nonces (never their secrets).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions
    @Argument(help: "The actor (id, name or id prefix).") var actor: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/actors/\(actor)/nonces")
        struct List: Decodable { var nonces: [ActorNonce] }
        let format = list.format(client)
        let nonces = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).nonces
        let now = WallClock.now()
        printList(bytes, format, [Column("ID"), Column("LEVEL"), Column("USES"), Column("EXPIRES"), Column("BY"), Column("CREATED", wide: true)]) {
            nonces.map { n in
                [n.id, n.level.rawValue, "\(n.uses)" + (n.maxUses.map { " of \($0)" } ?? ""),
                 n.expiresAt.map { $0 > now ? "in \(span($0 - now))" : "expired" } ?? "never", n.createdBy, age(n.createdAt)]
            }
        }
    }
}

struct ActorNonceRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a nonce: it stops working at once.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The actor (id, name or id prefix).") var actor: String
    @Argument(help: "The nonce's id.") var id: String

    func run() throws {
        _ = try client.client().send("DELETE", "/actors/\(actor)/nonces/\(id)")
        if !client.json { print("revoked \(id)") }
    }
}

struct ActorGrantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grant", abstract: "Let an identity read, execute (message) or update an actor, beyond its role and across namespaces.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The actor (id, name or id prefix).") var actor: String
    @Argument(help: "The identity (a token's identity: `propeller token list -o wide`).") var identity: String
    @Argument(help: "read, execute or update.") var level: String

    func validate() throws {
        guard ActorAccessLevel(rawValue: level) != nil else { throw ValidationError("level: read, execute or update") }
    }

    func run() throws {
        let bytes = try client.client().send("POST", "/actors/\(actor)/permissions",
                                             body: try JSONSerialization.data(withJSONObject: ["identity": identity, "level": level]).map { $0 })
        if client.json { return printJSON(bytes) }
        print("\(identity) may \(level) \(actor)")
    }
}

struct ActorUngrantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ungrant", abstract: "Take an identity's grant on an actor back.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The actor (id, name or id prefix).") var actor: String
    @Argument(help: "The identity.") var identity: String

    func run() throws {
        let path = identity.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? identity
        _ = try client.client().send("DELETE", "/actors/\(actor)/permissions/\(path)")
        if !client.json { print("\(identity)'s grant on \(actor) taken back") }
    }
}

struct ActorPermissionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "permissions", abstract: "List the identities granted an actor.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions
    @Argument(help: "The actor (id, name or id prefix).") var actor: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/actors/\(actor)/permissions")
        struct List: Decodable { var permissions: [ActorGrant] }
        let format = list.format(client)
        let grants = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).permissions
        printList(bytes, format, [Column("IDENTITY"), Column("LEVEL"), Column("BY"), Column("WHEN")]) {
            grants.map { [$0.identity, $0.level.rawValue, $0.grantedBy, age($0.grantedAt)] }
        }
    }
}
