import ArgumentParser
import PropellerCore
import PropellerManager

/// `propeller task stats` and `propeller proplet stats`: live usage sampled by proplets.
struct TaskStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show a task's CPU, memory, processes and I/O as its proplet samples them (--follow: as they come).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Task id.") var id: String
    @Flag(name: [.short, .long], help: "Keep printing samples until the task ends.") var follow = false

    func run() throws {
        let api = try client.client()
        if follow {
            if !client.json { print(UsageLines.header) }
            try api.stream("/tasks/\(id)/stats?follow=true") { line in
                if client.json { return print(String(decoding: line, as: UTF8.self)) }
                print(UsageLines.line(try api.decode(UsageSample.self, line)))
            }
            return
        }
        let bytes = try api.send("GET", "/tasks/\(id)/stats")
        if client.json { return printJSON(bytes) }
        UsageLines.print(try api.decode(UsageView.self, bytes).samples)
    }
}

struct PropletStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show the sum of a proplet's tasks' CPU, memory, processes and I/O, as it samples them.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "Proplet id.") var id: String

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/proplets/\(id)/stats")
        if client.json { return printJSON(bytes) }
        UsageLines.print(try api.decode(UsageView.self, bytes).samples)
    }
}

/// Samples as lines for people: the last ten, oldest first.
enum UsageLines {
    static let columns = ["AGE", "CPU", "MEMORY", "PIDS", "READ", "WRITTEN"]
    static let header = columns.map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined().trimmingWhitespace()

    static func cells(_ s: UsageSample) -> [String] {
        [age(s.at), s.cpuCores.map { String(format: "%.2f", $0) } ?? "-", s.memoryBytes.map { "\(ByteSize(bytes: $0))" } ?? "-",
         s.pids.map(String.init) ?? "-", s.ioReadBytes.map { "\(ByteSize(bytes: $0))" } ?? "-", s.ioWriteBytes.map { "\(ByteSize(bytes: $0))" } ?? "-"]
    }

    static func line(_ s: UsageSample) -> String {
        cells(s).map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined().trimmingWhitespace()
    }

    static func print(_ samples: [UsageSample]) {
        guard !samples.isEmpty else { return Swift.print("no samples yet (a proplet samples its running tasks every --stats-interval)") }
        Swift.print(table(columns, samples.suffix(10).map(cells)))
    }
}
