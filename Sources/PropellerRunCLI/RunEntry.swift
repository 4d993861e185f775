import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `propeller-run`: `propeller run` as a binary of its own, for the commands people type to start
/// one container (and for benchmarks beside crun and runc). It links the runtime and the image
/// code only, without the daemons, NIO, Hummingbird and GRDB, so the process starts in a fraction
/// of the time of the full `propeller` binary (BENCHMARKS.md, "Container start").
public enum RunEntry {
    /// Parses `arguments` as `propeller run` does, runs the container on this thread (it is this
    /// thread's child: PDEATHSIG and /proc/PID/task/PID/children are per thread) and exits with
    /// its status. Usage errors exit 125, like `docker run`.
    public static func main(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        do {
            try RunOptions.parse(arguments).run()
            exit(0)
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch {
            let code = RunCommand.exitCode(for: error)
            if code == .success { RunCommand.exit(withError: error) }  // --help
            // Only a usage error points at the help.
            printError("propeller-run: \(RunCommand.message(for: error))" + (code == .validationFailure ? "\nSee 'propeller-run --help'." : ""))
            exit(125)
        }
    }
}

extension RunOptions {
    /// `arguments` (after `run`) parsed and validated: quickly when they are usual, else by
    /// ArgumentParser, which throws its usage errors and help requests.
    package static func parse(_ arguments: [String]) throws -> RunOptions {
        if let quick = RunOptions(quickParsing: arguments), (try? quick.validate()) != nil { return quick }
        return try RunCommand.parse(arguments).options
    }
}
