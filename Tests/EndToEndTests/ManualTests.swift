import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// The man pages (`scripts/man`): one per command, generated from the commands themselves by
/// ArgumentParser's generate-manual, rendered by man(1).
@Suite("Man pages")
struct ManualTests {
    /// Every command path in `propeller --experimental-dump-help` ("propeller task exec", …).
    func commandPaths(_ command: [String: Any], prefix: [String]) -> [[String]] {
        let name = command["commandName"] as? String ?? ""
        let path = prefix + [name]
        return [path] + (command["subcommands"] as? [[String: Any]] ?? []).flatMap { commandPaths($0, prefix: path) }
    }

    @Test func everyCommandHasAPageThatManRenders() throws {
        let tool = (propellerBinary as NSString).deletingLastPathComponent + "/generate-manual"
        try #require(FileManager.default.isExecutableFile(atPath: tool), "\(tool) is missing: `swift build --product generate-manual` (scripts/test builds it)")
        let dir = try TempDirectory("propeller-man")
        defer { dir.remove() }
        let generated = try runProcess(tool, [propellerBinary, "--multi-page", "--output-directory", dir.path])
        #expect(generated.status == 0, "\(String(decoding: generated.stderr, as: UTF8.self))")

        let dump = try runProcess(propellerBinary, ["--experimental-dump-help"])
        let root = try #require(try JSONSerialization.jsonObject(with: dump.stdout) as? [String: Any])
        let paths = commandPaths(try #require(root["command"] as? [String: Any]), prefix: [])
        #expect(paths.count > 40)
        let pages = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
        for path in paths where path.last != "help" {
            #expect(pages.contains(path.joined(separator: ".") + ".1"), "no page for \(path.joined(separator: " "))")
        }

        var environment = ProcessInfo.processInfo.environment
        environment["MANWIDTH"] = "100"
        let shown = try runProcess("/usr/bin/man", ["-l", dir.path + "/propeller.task.exec.1"], environment: environment)
        let text = String(decoding: shown.stdout, as: UTF8.self)
        #expect(shown.status == 0)
        #expect(text.contains("propeller task exec") && text.contains("--interactive") && text.contains("--tty") && text.contains("no more privilege"), "\(text)")
    }

    /// ArgumentParser's completion scripts: bash completes a subcommand and an option for real;
    /// zsh's and fish's name the commands.
    @Test func completionScriptsComplete() throws {
        let dir = try TempDirectory("propeller-completion")
        defer { dir.remove() }
        let bash = try runProcess(propellerBinary, ["--generate-completion-script", "bash"])
        #expect(bash.status == 0)
        writeFile(dir.path + "/propeller.bash", String(decoding: bash.stdout, as: UTF8.self))
        func complete(_ words: [String]) throws -> [String] {
            let line = words.joined(separator: " ")
            let script = """
                source '\(dir.path)/propeller.bash'
                COMP_WORDS=(\(words.map { "'\($0)'" }.joined(separator: " ")))
                COMP_CWORD=\(words.count - 1)
                COMP_LINE='\(line)'
                COMP_POINT=${#COMP_LINE}
                _propeller propeller '\(words.last ?? "")' '\(words.dropLast().last ?? "")'
                printf '%s\\n' "${COMPREPLY[@]}"
                """
            let r = try runProcess("/bin/bash", ["-c", script])
            return String(decoding: r.stdout, as: UTF8.self).split(separator: "\n").map(String.init)
        }
        #expect(try complete(["propeller", "task", "ex"]) == ["exec"])
        #expect(try complete(["propeller", "task", "exec", "--t"]).contains("--tty"))
        for shell in ["zsh", "fish"] {
            let r = try runProcess(propellerBinary, ["--generate-completion-script", shell])
            let text = String(decoding: r.stdout, as: UTF8.self)
            #expect(r.status == 0 && text.contains("exec") && text.contains("proplet"), "\(shell)")
        }
    }
}
