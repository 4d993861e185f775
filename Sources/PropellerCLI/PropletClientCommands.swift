import ArgumentParser
import PropellerCore
import PropellerManager

struct PropletListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List proplets with their capacity and reservations.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/proplets?limit=1000")
        struct Page: Decodable { var proplets: [PropletRecord] }
        let format = list.format(client)
        let page = format == .json || format == .yaml ? nil : try api.decode(Page.self, bytes)
        printList(bytes, format, [Column("ID"), Column("NAME"), Column("STATUS"), Column("ELIGIBILITY"), Column("DRAIN"), Column("TASKS"), Column("CPU"),
                                  Column("MEMORY"), Column("PIDS", wide: true), Column("PLATFORM", wide: true), Column("VERSION", wide: true),
                                  Column("LABELS", wide: true), Column("LAST SEEN")]) {
            (page?.proplets ?? []).map { p in
                let a = p.allocated ?? .zero
                return [p.id, p.name, connectionStatus(p), p.eligible == false ? "ineligible" : "eligible", drainStatus(p), "\(p.taskCount ?? 0)/\(p.capacity.tasks)",
                        "\(Double(a.cpuMillis) / 1000)/\(Double(p.capacity.cpuMillis) / 1000)",
                        "\(ByteSize(bytes: a.memoryBytes))/\(ByteSize(bytes: p.capacity.memoryBytes))", "\(a.pids)/\(p.capacity.pids)",
                        "\(p.os)/\(p.arch) cgroup \(p.cgroupMode)", p.version,
                        p.labels.keys.sorted().map { "\($0)=\(p.labels[$0] ?? "")" }.joined(separator: ","), age(p.lastSeen)]
            }
        }
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
        let lines = [("ID", p.id), ("Name", p.name), ("Status", connectionStatus(p) + (p.reason.map { " (\($0))" } ?? "")),
                     ("Eligibility", p.eligible == false ? "ineligible" : "eligible"), ("Drain", drainStatus(p)),
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

/// alive, disconnected or lost, and whether it is shutting down.
private func connectionStatus(_ p: PropletRecord) -> String {
    let state = p.state ?? (p.alive ? "alive" : "lost")
    return p.draining == true ? state + ", shutting down" : state
}

/// `no`, or a drain in progress with the time left to its deadline.
private func drainStatus(_ p: PropletRecord) -> String {
    guard let drain = p.drain else { return "no" }
    guard let deadline = drain.deadline else { return "yes (no deadline)" }
    let left = deadline - WallClock.now()
    return left > 0 ? "yes (deadline in \(span(left)))" : "yes (deadline passed)"
}

struct PropletDrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Drain a proplet before maintenance: nothing new goes there and its actor workers move.",
        discussion: """
        Tasks running there finish; at --deadline, those still running are stopped and go where \
        their restart policy sends them (on-failure with attempts left: another proplet). The \
        drain ends when nothing of the cluster runs there; the proplet stays ineligible until \
        `propeller proplet eligibility ID on`. Given again, the drain gets the new deadline.
        """)
    @OptionGroup var client: ClientOptions
    @Argument(help: "Proplet id.") var id: String
    @Option(help: ArgumentHelp("Stop what still runs there after this long (10m, 1h; 0: now). Default: no deadline.", valueName: "duration"))
    var deadline: String?
    @Flag(help: "End the drain: the proplet is eligible again.") var cancel = false

    func validate() throws {
        if cancel && deadline != nil { throw ValidationError("--cancel takes no --deadline") }
        if let deadline { _ = try parsedDeadline(deadline) }
    }

    private func parsedDeadline(_ text: String) throws -> Double {
        guard let d = try? DurationParsing.parse(text), d >= .zero else {
            throw ValidationError("invalid --deadline \"\(text)\": expected a duration like 90s, 10m or 1h")
        }
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    func run() throws {
        let api = try client.client()
        let bytes: [UInt8]
        if cancel {
            bytes = try api.send("DELETE", "/proplets/\(id)/drain")
        } else {
            let body = try deadline.map { "{\"deadline_seconds\": \(try parsedDeadline($0))}" } ?? "{}"
            bytes = try api.send("POST", "/proplets/\(id)/drain", body: Array(body.utf8))
        }
        if client.json { return printJSON(bytes) }
        let p = try api.decode(PropletRecord.self, bytes)
        print(cancel ? "\(p.id): drain ended, eligible" : "\(p.id): draining: \(drainStatus(p)), \(p.taskCount ?? 0) task(s) there")
    }
}

struct PropletEligibilityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eligibility",
        abstract: "Open (on) or close (off) a proplet to new work; what runs there goes on.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Proplet id.") var id: String
    @Argument(help: ArgumentHelp("on or off.", valueName: "on|off")) var setting: String

    func validate() throws {
        guard ["on", "off"].contains(setting) else { throw ValidationError("expected on or off, not \"\(setting)\"") }
    }

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("PUT", "/proplets/\(id)/eligibility", body: Array("{\"eligible\": \(setting == "on")}".utf8))
        if client.json { return printJSON(bytes) }
        let p = try api.decode(PropletRecord.self, bytes)
        print("\(p.id): \(p.eligible == false ? "ineligible" : "eligible")")
    }
}
