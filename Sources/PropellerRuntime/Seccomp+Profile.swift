#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PropellerCore

/// A seccomp profile in the JSON format Docker and the OCI runtime spec use
/// (`defaultAction`, `syscalls: [{names, action, errnoRet, args, includes, excludes}]`), so an
/// operator can pass the same file they would give `docker run --security-opt seccomp=FILE`.
public struct SeccompProfile: Codable, Hashable, Sendable {
    public enum Action: String, Codable, Hashable, Sendable {
        case allow = "SCMP_ACT_ALLOW"
        case errno = "SCMP_ACT_ERRNO"
        case kill = "SCMP_ACT_KILL"
        case killThread = "SCMP_ACT_KILL_THREAD"
        case killProcess = "SCMP_ACT_KILL_PROCESS"
        case trap = "SCMP_ACT_TRAP"
        case log = "SCMP_ACT_LOG"
    }

    public enum Operator: String, Codable, Hashable, Sendable {
        case notEqual = "SCMP_CMP_NE"
        case lessThan = "SCMP_CMP_LT"
        case lessOrEqual = "SCMP_CMP_LE"
        case equal = "SCMP_CMP_EQ"
        case greaterOrEqual = "SCMP_CMP_GE"
        case greaterThan = "SCMP_CMP_GT"
        case maskedEqual = "SCMP_CMP_MASKED_EQ"
    }

    /// A condition on one syscall argument. For `maskedEqual`, `(arg & value) == valueTwo`.
    public struct Argument: Codable, Hashable, Sendable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: Operator

        public init(index: UInt32, value: UInt64, valueTwo: UInt64? = nil, op: Operator) {
            self.index = index
            self.value = value
            self.valueTwo = valueTwo
            self.op = op
        }
    }

    /// When a rule applies: all listed capabilities held (`includes`) or not all held (`excludes`).
    public struct Condition: Codable, Hashable, Sendable {
        public var caps: [String]?
        public init(caps: [String]? = nil) { self.caps = caps }
    }

    public struct Rule: Codable, Hashable, Sendable {
        public var names: [String]
        public var action: Action
        public var errnoRet: UInt32?
        public var args: [Argument]?
        public var includes: Condition?
        public var excludes: Condition?

        public init(names: [String], action: Action, errnoRet: UInt32? = nil, args: [Argument]? = nil,
                    includes: Condition? = nil, excludes: Condition? = nil) {
            self.names = names
            self.action = action
            self.errnoRet = errnoRet
            self.args = args
            self.includes = includes
            self.excludes = excludes
        }
    }

    public var defaultAction: Action
    public var defaultErrnoRet: UInt32?
    public var syscalls: [Rule]

    public init(defaultAction: Action, defaultErrnoRet: UInt32? = nil, syscalls: [Rule]) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.syscalls = syscalls
    }

    /// Reads a profile file, with errors that name the file and what is wrong in it.
    public static func load(path: String) throws -> SeccompProfile {
        let text: String
        do {
            text = try FileIO.readString(path)
        } catch let error as PropellerError {
            throw PropellerError(error.code, "seccomp profile: \(error.message)")
        }
        do {
            return try JSONDecoder().decode(SeccompProfile.self, from: Data(text.utf8))
        } catch let DecodingError.dataCorrupted(context) {
            throw PropellerError(.invalidArgument, "seccomp profile \(path): not valid JSON (\(context.debugDescription))")
        } catch let DecodingError.keyNotFound(key, context) {
            throw PropellerError(.invalidArgument, "seccomp profile \(path): missing \"\(key.stringValue)\" at \(Self.path(context.codingPath))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw PropellerError(.invalidArgument, "seccomp profile \(path): \(context.debugDescription) at \(Self.path(context.codingPath))")
        } catch {
            throw PropellerError(.invalidArgument, "seccomp profile \(path): \(error)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "top level" : keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }

    /// Every field, one rule per line, in a fixed order: what a compiled program is cached under.
    /// (JSON encoding would do, at several times the cost on each one-shot run.)
    var canonicalText: String {
        func condition(_ c: Condition?) -> String { c?.caps.map { $0.joined(separator: ",") } ?? "-" }
        var text = "default=\(defaultAction.rawValue)/\(defaultErrnoRet.map(String.init) ?? "-")\n"
        for rule in syscalls {
            text += rule.action.rawValue + "/" + (rule.errnoRet.map(String.init) ?? "-")
            text += " inc=" + condition(rule.includes) + " exc=" + condition(rule.excludes) + " args="
            for a in rule.args ?? [] { text += "\(a.index):\(a.op.rawValue):\(a.value):\(a.valueTwo.map(String.init) ?? "-");" }
            text += " names=" + rule.names.joined(separator: ",") + "\n"
        }
        return text
    }

    /// The rules that apply to a process holding `capabilities`.
    func rules(for capabilities: CapabilitySet) -> [Rule] {
        func holdsAll(_ names: [String]?) -> Bool {
            (names ?? []).allSatisfy { name in (try? Capabilities.number(forName: name)).map(capabilities.contains) ?? false }
        }
        return syscalls.filter { rule in
            if let inc = rule.includes?.caps, !inc.isEmpty, !holdsAll(inc) { return false }
            if let exc = rule.excludes?.caps, !exc.isEmpty, holdsAll(exc) { return false }
            return true
        }
    }
}
