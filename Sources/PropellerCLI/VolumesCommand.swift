import ArgumentParser
import Foundation
import PropellerCore
import PropellerRunCLI

/// `propeller volume`: the named volumes proplets keep (`task create --volume NAME:/path`).
struct VolumesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "List and remove named volumes on proplets.",
        discussion: """
        A named volume is made on the proplet that first runs a task naming it and kept for the \
        tasks after it there. Sizes are measured every 30 s.
        """,
        subcommands: [VolumeListCommand.self, VolumeRemoveCommand.self]
    )
}

struct VolumeListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Named volumes, per proplet.")
    @OptionGroup var client: ClientOptions
    @Option(help: ArgumentHelp("Only this proplet's.", valueName: "id")) var proplet: String?
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/volumes" + (proplet.map { "?proplet=" + ($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0) } ?? ""))
        struct Listed: Decodable { var proplet: String; var name: String; var sizeBytes: UInt64; var inUse: Int }
        struct List: Decodable { var volumes: [Listed] }
        let format = list.format(client)
        let volumes = format == .json || format == .yaml ? [] : try api.decode(List.self, bytes).volumes
        printList(bytes, format, [Column("PROPLET"), Column("NAME"), Column("SIZE"), Column("IN USE")]) {
            volumes.map { [$0.proplet, $0.name, "\(ByteSize(bytes: $0.sizeBytes))", "\($0.inUse)"] }
        }
    }
}

struct VolumeRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a named volume nothing uses from a proplet.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Its name.") var name: String
    @Option(help: ArgumentHelp("The proplet that keeps it.", valueName: "id")) var proplet: String

    func run() throws {
        _ = try client.client().send("DELETE", "/proplets/\(proplet)/volumes/\(name)")
        if !client.json { print("removal of \(name) on \(proplet) asked") }
    }
}
