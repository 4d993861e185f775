import ArgumentParser
import PropellerRunCLI
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// `propeller`: one executable with subcommands, like `nomad agent` or `k3s server`.
public struct PropellerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "propeller",
        abstract: "Propeller runs Linux container tasks across a fleet of machines.",
        discussion: """
        `propeller manager` and `propeller proplet` are the daemons; `propeller task`, `propeller actor` \
        and `propeller proplet list` talk to the manager's REST API; `propeller run` starts one container \
        on this machine through the same runtime the proplet uses.
        """,
        version: "0.1.0",
        subcommands: [RunCommand.self, ImageCommand.self, ManagerCommand.self, PropletCommand.self, ProxyCommand.self, TaskCommand.self, ActorCommand.self, TokenCommand.self, NamespaceCommand.self, AuditCommand.self, SecretCommand.self, VolumesCommand.self, ProvisionCommand.self]
    )

    public init() {}

    /// Parses `arguments`, runs the command and exits with its status. Usage errors exit 125,
    /// like `docker run`, so a task's own exit codes stay distinguishable from Propeller's.
    public static func entry(_ commandLine: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        let command: any ParsableCommand
        var arguments = commandLine
        do {
            arguments = try ConfigFile.expand(commandLine)
            if let run = quickRun(arguments) {
                // On the main thread, as below.
                do {
                    try run.run()
                    Glibc.exit(0)
                } catch {
                    fail(error, arguments: arguments)
                }
            }
            // A word where a command is expected that names none is an error, not the parent's
            // help (ArgumentParser shows the root help for `propeller workflow --help`, exit 0).
            if let unknown = commandPath(arguments).unknown {
                let path = commandPath(arguments).path
                let known = subcommandNames(of: path).joined(separator: ", ")
                printError("propeller: unknown command '\(unknown)'" + (path.isEmpty ? "" : " for 'propeller \(path.joined(separator: " "))'")
                           + " (commands: \(known))\nSee 'propeller \(path.map { $0 + " " }.joined())--help'.")
                Glibc.exit(125)
            }
            command = try parseAsRoot(arguments)
        } catch {
            fail(error, arguments: arguments)
        }
        if let asyncCommand = command as? any AsyncParsableCommand {
            // Daemons and API clients: async, on the concurrency runtime's threads.
            Task {
                var c = asyncCommand
                do {
                    try await c.run()
                    Glibc.exit(0)
                } catch {
                    fail(error, arguments: arguments)
                }
            }
            dispatchMain()
        }
        // `propeller run` stays on the main thread: the container is this thread's child
        // (PDEATHSIG and /proc/PID/task/PID/children are per thread).
        do {
            var c = command
            try c.run()
            Glibc.exit(0)
        } catch {
            fail(error, arguments: arguments)
        }
    }

    /// `propeller run` with a usual command line, read without ArgumentParser: parsing from the
    /// root builds the whole command tree by reflection, a few milliseconds per start here, as
    /// much as starting the container (see ``RunOptions/init(quickParsing:)``). nil when
    /// anything is unusual (help, a usage error): the full parse then reports it, with the
    /// usual `propeller run` wording.
    private static func quickRun(_ arguments: [String]) -> RunOptions? {
        guard arguments.first == "run", let options = RunOptions(quickParsing: Array(arguments.dropFirst())),
              (try? options.validate()) != nil else { return nil }
        return options
    }

    private static func fail(_ error: any Error, arguments: [String]) -> Never {
        if let exitCode = error as? ExitCode { Glibc.exit(exitCode.rawValue) }
        if let error = error as? ClientError {
            printError("propeller: \(error.message)")
            Glibc.exit(1)
        }
        let code = exitCode(for: error)
        if code == .success {
            exit(withError: error)  // --help, --version
        }
        let message = self.message(for: error)
        // Only a usage error points at the help: a refused layer or a registry's answer is not
        // cured by reading it.
        guard code == .validationFailure else {
            printError("propeller: \(message)")
            Glibc.exit(125)
        }
        let path = commandPath(arguments).path
        printError("propeller: \(message)\nSee 'propeller \(path.map { $0 + " " }.joined())--help'.")
        Glibc.exit(125)
    }

    /// The words at the start of `arguments` that name commands (`task create`), and the first
    /// word that names none where a command is expected (nil: none). A command with a default
    /// subcommand (`proplet`, `provision`) may take other words: the walk stops there.
    static func commandPath(_ arguments: [String]) -> (path: [String], unknown: String?) {
        var type: any ParsableCommand.Type = PropellerCommand.self
        var path: [String] = []
        for word in arguments {
            let configuration = type.configuration
            guard !word.hasPrefix("-"), word != "help", !configuration.subcommands.isEmpty, configuration.defaultSubcommand == nil else { break }
            guard let next = subcommand(named: word, of: configuration) else { return (path, word) }
            path.append(word)
            type = next
        }
        return (path, nil)
    }

    /// The subcommand `name` (or alias) of a command.
    private static func subcommand(named name: String, of configuration: CommandConfiguration) -> (any ParsableCommand.Type)? {
        for candidate in configuration.subcommands {
            let names: [String] = [candidate._commandName] + candidate.configuration.aliases
            if names.contains(name) { return candidate }
        }
        return nil
    }

    /// The names of the subcommands of the command at `path`.
    static func subcommandNames(of path: [String]) -> [String] {
        var type: any ParsableCommand.Type = PropellerCommand.self
        for word in path {
            guard let next = subcommand(named: word, of: type.configuration) else { break }
            type = next
        }
        var names: [String] = []
        for candidate in type.configuration.subcommands { names.append(candidate._commandName) }
        return names
    }
}
