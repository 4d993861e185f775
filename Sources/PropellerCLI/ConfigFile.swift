#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import PropellerRunCLI

/// A component's configuration file (`propeller manager|proxy|proplet --config FILE`, and the
/// CLI's): `key = value` lines whose keys are the command's long option names, `#` comments.
///
/// ```
/// mqtt = mqtts://broker.example:8883
/// mqtt-ca = /etc/propeller/ca.pem
/// mqtt-username = proplet-3f2a
/// mqtt-password = …
/// label = zone=a
/// ```
///
/// The file's options come first and the command line's after them, so a flag given on the
/// command line wins. A key may repeat where its option does (`label`). A file holding a secret
/// (`mqtt-password`, `api-token`) must not be readable by group or others.
struct ConfigFile {
    /// Options that carry a secret: accepted in a config file only, never as a command-line flag
    /// (every user on the machine can read process arguments). An array: every start of the CLI
    /// checks its arguments against it, and a first `Set<String>` costs a process ~0.3 ms
    /// (generic metadata and conformance lookups in this large binary).
    static let secretKeys: [String] = ["mqtt-password", "api-token"]

    var path: String
    var entries: [(key: String, value: String, line: Int)]

    init(path: String, text: String) throws {
        self.path = path
        entries = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw).trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw ValidationError("config \(path) line \(number + 1): expected KEY = VALUE")
            }
            let key = String(line[..<eq]).trimmingWhitespace()
            var value = String(line[line.index(after: eq)...]).trimmingWhitespace()
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }), key != "config" else {
                throw ValidationError("config \(path) line \(number + 1): invalid key \"\(key)\"")
            }
            entries.append((key, value, number + 1))
        }
    }

    /// Reads `path`, refusing a file with secrets that others can read.
    static func load(_ path: String) throws -> ConfigFile {
        let (text, mode) = try readSmallFile(path, what: "config")
        let file = try ConfigFile(path: path, text: text)
        if file.entries.contains(where: { secretKeys.contains($0.key) }) && mode & 0o077 != 0 {
            throw ValidationError("config \(path) holds secrets and can be read by other users (mode \(String(mode & 0o777, radix: 8))): chmod 600 it")
        }
        return file
    }

    /// The file's options as arguments: `--key=value`; `true`/`false` for a flag.
    var arguments: [String] {
        entries.compactMap { e in
            switch e.value {
            case "true": "--\(e.key)"
            case "false": nil
            default: "--\(e.key)=\(e.value)"
            }
        }
    }

    /// Replaces `--config FILE` in `arguments` by the file's options, placed right after the
    /// subcommand names so that the command line's own flags come later and win. Refuses secret
    /// options given on the command line itself.
    static func expand(_ arguments: [String]) throws -> [String] {
        for a in arguments.prefix(while: { $0 != "--" }) where a.hasPrefix("--") {
            let name = String(a.dropFirst(2).prefix { $0 != "=" })
            if secretKeys.contains(name) {
                throw ValidationError("--\(name) is not accepted on the command line (other users can read process arguments): put it in a --config file (mode 600) or use --\(name)-file")
            }
        }
        var rest: [String] = []
        var path: String?
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" {
                rest += arguments[i...]
                break
            }
            if a == "--config" {
                guard i + 1 < arguments.count else { throw ValidationError("--config needs a file") }
                path = arguments[i + 1]
                i += 2
                continue
            }
            if a.hasPrefix("--config=") {
                path = String(a.dropFirst("--config=".count))
                i += 1
                continue
            }
            rest.append(a)
            i += 1
        }
        guard let path else { return arguments }
        let file = try load(absolutePath(path))
        let commands = rest.prefix { !$0.hasPrefix("-") }
        return Array(commands) + file.arguments + rest.dropFirst(commands.count)
    }
}
