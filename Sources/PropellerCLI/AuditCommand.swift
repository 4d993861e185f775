import ArgumentParser
import Foundation
import PropellerCore
import PropellerManager

/// `propeller audit`: the manager's audit log (an admin's token).
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Show the audit log: who did what, when, from where.",
        discussion: """
        Every write to the API is recorded (but exec's keystrokes and resizes), every read of \
        secrets, and every request a token's role was refused (403). Oldest first; --after \
        pages on from an entry's number.
        """
    )
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions
    @Option(help: "Show entries after this number.") var after: Int64 = 0
    @Option(help: "At most this many (1 to 1000).") var limit: Int = 100

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/audit?after=\(after)&limit=\(limit)")
        struct Page: Decodable { var entries: [AuditEntry] }
        let format = list.format(client)
        let entries = format == .json || format == .yaml ? [] : try api.decode(Page.self, bytes).entries
        printList(bytes, format, [Column("SEQ"), Column("TIME"), Column("IDENTITY"), Column("ROLE"), Column("REQUEST"), Column("STATUS"),
                                  Column("FROM", wide: true), Column("TOKEN", wide: true)]) {
            entries.map { e in
                [String(e.seq), WallClock.iso8601(e.at), e.identity, e.role, "\(e.method) \(e.path)", String(e.status), e.peer, e.tokenId]
            }
        }
    }
}
