import PropellerRunCLI
import PropellerTestSupport
import Testing

/// `propeller run`'s quick parse (without ArgumentParser, for start time) must read every
/// command line exactly as ArgumentParser does, or leave it to ArgumentParser.
@Suite struct RunOptionsQuickParseTests {
    /// What ArgumentParser makes of `arguments` (parsed and validated), nil for a usage error.
    func parsedByArgumentParser(_ arguments: [String]) -> RunOptions? {
        (try? RunCommand.parse(arguments))?.options
    }

    /// What the quick parse makes of them, nil when it leaves them to ArgumentParser.
    func parsedQuickly(_ arguments: [String]) -> RunOptions? {
        guard let options = RunOptions(quickParsing: arguments), (try? options.validate()) != nil else { return nil }
        return options
    }

    @Test func theUsualCommandLinesAreReadQuicklyAndAsArgumentParserReadsThem() throws {
        let lines: [[String]] = [
            ["--rootfs", "/r", "--memory", "64M", "--cpus", "1", "--pids", "64", "/bin/true"],
            ["--image", "localhost:5000/busybox:1", "--pull=always", "-e", "A=1", "--env", "B", "-v", "/a:/b:ro", "--", "sh", "-c", "echo $A"],
            ["--rootfs=/r", "--read-only", "--network", "host", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "ls", "-l", "--rootfs", "x"],
            ["--image", "oci:/tmp/layout:v1", "--data-dir", "/d", "--scratch", "disk", "--timeout", "2s", "--report", "/tmp/r.json"],
            ["--image", "busybox", "--registry", "h:5000", "--registry-username", "u", "--registry-password-stdin", "--insecure-registry", "h:5000"],
            ["--rootfs", "/r", "-u", "app", "-w", "/work", "--hostname", "h", "--ulimit", "nofile=10:20", "--tmpfs", "/t:size=1M", "--seccomp", "unconfined",
             "--log-level", "debug", "/bin/sh"],
            ["--rootfs", "/r", "--env", "", "--", "--help"],
        ]
        for line in lines {
            let quick = try #require(parsedQuickly(line), "not read quickly: \(line)")
            #expect(parsedByArgumentParser(line) == quick, "\(line)")
        }
        let bench = try #require(parsedQuickly(["--rootfs", "/r", "--memory", "64M", "/bin/true"]))
        #expect(bench.rootfs == "/r" && bench.memory == "64M" && bench.command == ["/bin/true"] && bench.network == "none")
    }

    @Test func whatIsUnusualIsLeftToArgumentParser() {
        let lines: [[String]] = [
            ["--help"], ["-h"], ["--rootfs", "/r", "--bogus", "true"], ["--rootfs"], ["--rootfs", "/r", "--memory"],
            ["--rootfs", "/r", "--memory", "-5", "true"], ["--rootfs", "/r", "-eA=1", "true"], ["--rootfs", "/r", "--read-only=true", "true"],
            ["--rootfs", "/r", "--memory", "1M", "--memory", "2M", "true"], ["--rootfs", "/r", "--read-only", "--read-only", "true"],
            ["--rootfs", "/r", "--pull", "sometimes", "true"], ["--rootfs", "/r", "-", "true"], ["--rootfs", "/r", "--network", "bridge", "true"],
            ["--rootfs", "/r"], ["--rootfs", "/r", "--image", "x", "true"], ["--rootfs", "/r", "-x", "true"],
        ]
        for line in lines {
            #expect(parsedQuickly(line) == nil, "read quickly: \(line)")
        }
    }

    /// Random command lines from valid and odd pieces: whenever the quick parse reads one,
    /// ArgumentParser reads it the same; one made only of valid pieces is always read quickly.
    @Test func randomCommandLinesAreReadTheSameWay() {
        let valid: [[String]] = [
            ["--image", "busybox"], ["--memory", "64M"], ["--memory=1G"], ["--cpus", "0.5"], ["--pids", "5"], ["-e", "A=1"], ["--env=B"],
            ["--env", "C=x=y"], ["-v", "/a:/b"], ["--volume", "/c:/d:ro"], ["--tmpfs", "/t"], ["--read-only"], ["--network", "host"],
            ["--seccomp", "unconfined"], ["--cap-add", "NET_RAW"], ["--cap-drop=ALL"], ["--ulimit", "nofile=10:20"], ["--log-level", "debug"],
            ["--pull", "never"], ["--data-dir", "/d"], ["--insecure-registry", "h:5000"], ["--registry-password-stdin"], ["-q"], ["--quiet"], ["-w", "/w"],
            ["-u", "1:1"], ["--hostname", "h"], ["--timeout", "1s"], ["--report", "/r.json"], ["--registry=h"], ["--registry-username", "u"],
            ["--registry-password-file", "/p"], ["--scratch", "memory"], ["--scratch-size", "1M"], ["--workdir", ""],
        ]
        let odd: [[String]] = [
            ["--bogus"], ["-h"], ["--help"], ["-"], ["--memory"], ["--memory", "-1"], ["-e"], ["-eA=1"], ["--read-only=true"], ["--pull", "bogus"],
            ["--"], [""], ["--network", "bridge"], ["--scratch", "tape"], ["--log-level", "loud"], ["-vx"], ["--=x"], ["---rootfs", "/r"],
            ["--rootfs", "/s"], ["--memory", "2M"], ["--env"], ["--user="], ["--env="],
        ]
        let commands: [[String]] = [[], ["/bin/true"], ["sh", "-c", "echo --memory 1"], ["--", "ls", "-l"], ["--", "--help"], ["--"], ["-x"], ["", "a"]]
        var generator = SplitMix(seed: 0x5EED_2026)
        var readQuickly = 0
        for _ in 0..<1_500 {
            var line: [String] = generator.next() % 4 == 0 ? [] : ["--rootfs", "/r"]
            var onlyValid = !line.isEmpty
            var singles: Set<String> = ["--rootfs"]
            for _ in 0..<(generator.next() % 6) {
                if generator.next() % 5 == 0 {
                    line += odd[Int(generator.next() % UInt64(odd.count))]
                    onlyValid = false
                } else {
                    let piece = valid[Int(generator.next() % UInt64(valid.count))]
                    let shorts = ["-e": "--env", "-v": "--volume", "-w": "--workdir", "-u": "--user"]
                    let name = shorts[piece[0]] ?? String(piece[0].split(separator: "=")[0])
                    let repeatable = ["--env", "--volume", "--tmpfs", "--cap-add", "--cap-drop", "--ulimit", "--insecure-registry"].contains(name)
                    if !repeatable && !singles.insert(name).inserted { onlyValid = false }
                    line += piece
                }
            }
            let command = commands[Int(generator.next() % UInt64(commands.count))]
            line += command
            let imageRun = line.contains("--image")
            if command.isEmpty && !imageRun || line.contains("-x") && !line.contains("--") || command.first == "" { onlyValid = false }
            if imageRun || line.contains("--scratch") || line.contains("--scratch-size") { onlyValid = false }  // --image with --rootfs, --scratch without --image
            let argumentParser = parsedByArgumentParser(line)
            if let quick = parsedQuickly(line) {
                readQuickly += 1
                #expect(argumentParser == quick, "\(line)")
            } else if onlyValid {
                #expect(argumentParser == nil, "left to ArgumentParser although usual: \(line)")
            }
        }
        #expect(readQuickly > 250)
    }
}
