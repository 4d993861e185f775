import ArgumentParser
import PropellerCore
import PropellerManager

struct PropletListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List proplets with their capacity and reservations.")
    @OptionGroup var client: ClientOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/proplets?limit=1000")
        if client.json { return printJSON(bytes) }
        struct Page: Decodable { var proplets: [PropletRecord] }
        let page = try api.decode(Page.self, bytes)
        print(table(["ID", "NAME", "STATUS", "TASKS", "CPU", "MEMORY", "LAST SEEN"], page.proplets.map { p in
            let a = p.allocated ?? .zero
            return [p.id, p.name, p.draining == true ? "draining" : (p.state ?? (p.alive ? "alive" : "lost")), "\(p.taskCount ?? 0)/\(p.capacity.tasks)",
                    "\(Double(a.cpuMillis) / 1000)/\(Double(p.capacity.cpuMillis) / 1000)",
                    "\(ByteSize(bytes: a.memoryBytes))/\(ByteSize(bytes: p.capacity.memoryBytes))", age(p.lastSeen)]
        }))
    }
}

struct PropletGetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show one proplet.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Proplet id.") var id: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/proplets/\(id)")
        if client.json { return printJSON(bytes) }
        let p = try api.decode(PropletRecord.self, bytes)
        let a = p.allocated ?? .zero
        let lines = [("ID", p.id), ("Name", p.name), ("Status", p.alive ? "alive" : "dead" + (p.reason.map { " (\($0))" } ?? "")),
                     ("Version", p.version), ("Platform", "\(p.os)/\(p.arch), cgroup \(p.cgroupMode)"),
                     ("Labels", p.labels.keys.sorted().map { "\($0)=\(p.labels[$0] ?? "")" }.joined(separator: ",")),
                     ("Tasks", "\(p.taskCount ?? 0) of \(p.capacity.tasks)"), ("CPU", "\(Double(a.cpuMillis) / 1000) of \(Double(p.capacity.cpuMillis) / 1000)"),
                     ("Memory", "\(ByteSize(bytes: a.memoryBytes)) of \(ByteSize(bytes: p.capacity.memoryBytes))"), ("Last seen", age(p.lastSeen))]
        printFields(lines)
    }
}

struct PropletDeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Forget a dead proplet.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Proplet id.") var id: String

    func run() throws {
        _ = try client.client().send("DELETE", "/proplets/\(id)")
        if !client.json { print("deleted \(id)") }
    }
}
