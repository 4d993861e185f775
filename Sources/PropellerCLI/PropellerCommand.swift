import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `propeller`: one executable with subcommands, like `nomad agent` or `k3s server`.
public struct PropellerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "propeller",
        abstract: "Propeller runs Linux container tasks across a fleet of machines.",
        discussion: """
        `propeller manager` and `propeller proplet` are the daemons; `propeller task` and         `propeller proplet list` talk to the manager's REST API; `propeller run` starts one         container on this machine through the same runtime the proplet uses.
        """,
        version: "0.1.0",
        subcommands: [RunCommand.self, ImageCommand.self, ManagerCommand.self, PropletCommand.self, TaskCommand.self]
    )

    public init() {}

    /// Parses `arguments`, runs the command and exits with its status. Usage errors exit 125,
    /// like `docker run`, so a task's own exit codes stay distinguishable from Propeller's.
    public static func entry(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) async -> Never {
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            Glibc.exit(0)
        } catch let exitCode as ExitCode {
            Glibc.exit(exitCode.rawValue)
        } catch let error as ClientError {
            printError("propeller: \(error.message)")
            Glibc.exit(1)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)  // --help, --version
            }
            let message = self.message(for: error)
            let subcommand = arguments.first.map { $0.hasPrefix("-") ? "" : $0 + " " } ?? ""
            printError("propeller: \(message)\nSee 'propeller \(subcommand)--help'.")
            Glibc.exit(125)
        }
    }
}
