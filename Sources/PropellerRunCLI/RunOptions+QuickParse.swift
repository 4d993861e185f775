/// The quick parse of `propeller run`'s usual command lines, without ArgumentParser.
///
/// ArgumentParser builds its view of a command by reflection (a `Mirror` over every property
/// wrapper, each generic type a runtime conformance lookup over the binary's conformance
/// records): 1.7–3.2 ms of a run that takes 8–10 ms in all, measured in `propeller-run`. This
/// parse reads the same grammar by table and gives up (nil) on anything it does not know for
/// certain ArgumentParser reads the same way: help, an unknown option, a missing value, a value
/// that looks like an option or is empty after `=`, a single-valued option given twice, joined short options. The
/// caller then parses with ArgumentParser, which reports the problem in its usual words, so
/// the quick path never decides what a usage error says. `RunOptionsQuickParseTests` checks
/// that both read every command line the same.
extension RunOptions {
    /// How a name takes its value; single-valued names and flags carry a bit of their own (to
    /// notice them given twice).
    private enum Kind {
        case flag(bit: Int)
        case single(bit: Int)
        case repeated
    }

    /// The kind of the long option `name`; nil for a name `propeller run` does not take.
    /// (Plain switches, no key paths or sets: each generic type a start touches for the first
    /// time is a runtime metadata lookup.)
    private static func kind(of name: Substring) -> Kind? {
        switch name {
        case "read-only": .flag(bit: 0)
        case "registry-password-stdin": .flag(bit: 1)
        case "quiet": .flag(bit: 22)
        case "env", "cap-add", "cap-drop", "volume", "tmpfs", "ulimit", "insecure-registry": .repeated
        case "rootfs": .single(bit: 2)
        case "image": .single(bit: 3)
        case "scratch": .single(bit: 4)
        case "scratch-size": .single(bit: 5)
        case "memory": .single(bit: 6)
        case "cpus": .single(bit: 7)
        case "pids": .single(bit: 8)
        case "timeout": .single(bit: 9)
        case "workdir": .single(bit: 10)
        case "user": .single(bit: 11)
        case "hostname": .single(bit: 12)
        case "network": .single(bit: 13)
        case "seccomp": .single(bit: 14)
        case "report": .single(bit: 15)
        case "log-level": .single(bit: 16)
        case "data-dir": .single(bit: 17)
        case "registry-username": .single(bit: 18)
        case "registry-password-file": .single(bit: 19)
        case "registry": .single(bit: 20)
        case "pull": .single(bit: 21)
        default: nil
        }
    }

    /// The long name of a short option.
    private static func longName(short: String) -> Substring? {
        switch short {
        case "-e": "env"
        case "-w": "workdir"
        case "-u": "user"
        case "-v": "volume"
        case "-q": "quiet"
        default: nil
        }
    }

    /// Stores `value` for `name` (true for a flag); false when the value is not one the option
    /// takes.
    private mutating func set(_ name: Substring, _ value: String) -> Bool {
        switch name {
        case "read-only": readOnly = true
        case "registry-password-stdin": images.registryPasswordStdin = true
        case "quiet": images.quiet = true
        case "env": env.append(value)
        case "cap-add": capAdd.append(value)
        case "cap-drop": capDrop.append(value)
        case "volume": volume.append(value)
        case "tmpfs": tmpfs.append(value)
        case "ulimit": ulimit.append(value)
        case "insecure-registry": images.insecureRegistry.append(value)
        case "rootfs": rootfs = value
        case "image": image = value
        case "scratch": scratch = value
        case "scratch-size": scratchSize = value
        case "memory": memory = value
        case "cpus": cpus = value
        case "pids": pids = value
        case "timeout": timeout = value
        case "workdir": workdir = value
        case "user": user = value
        case "hostname": hostname = value
        case "network": network = value
        case "seccomp": seccomp = value
        case "report": report = value
        case "log-level": logLevel = value
        case "data-dir": images.dataDir = value
        case "registry-username": images.registryUsername = value
        case "registry-password-file": images.registryPasswordFile = value
        case "registry": images.registry = value
        case "pull":
            guard let policy = PullPolicy(rawValue: value) else { return false }
            images.pull = policy
        default: return false
        }
        return true
    }

    /// `arguments` (after `run`) read without ArgumentParser, or nil when ArgumentParser must
    /// read them (see above). Not validated: call ``validate()``.
    package init?(quickParsing arguments: [String]) {
        self.init()
        var given: UInt64 = 0
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" {
                command = Array(arguments[index...])
                return
            }
            if argument == "-" || argument.isEmpty { return nil }
            guard argument.hasPrefix("-") else {
                command = Array(arguments[(index - 1)...])
                return
            }
            var name: Substring
            var attached: String?
            if argument.hasPrefix("--") {
                name = argument.dropFirst(2)
                if let equals = name.firstIndex(of: "=") {
                    attached = String(name[name.index(after: equals)...])
                    name = name[..<equals]
                }
            } else {
                guard let long = Self.longName(short: argument) else { return nil }
                name = long
            }
            guard let kind = Self.kind(of: name) else { return nil }
            var value = ""
            switch kind {
            case .flag(let bit):
                guard attached == nil, given & (1 << bit) == 0 else { return nil }
                given |= 1 << bit
            case .single(let bit):
                guard given & (1 << bit) == 0 else { return nil }
                given |= 1 << bit
                fallthrough
            case .repeated:
                if let attached {
                    guard !attached.isEmpty else { return nil }
                    value = attached
                } else {
                    guard index < arguments.count, !arguments[index].hasPrefix("-") else { return nil }
                    value = arguments[index]
                    index += 1
                }
            }
            guard set(name, value) else { return nil }
        }
    }
}
