import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Volumes from the CLI to the container, with real processes: a manager, a proxy, a registry
/// and a proplet whose operator offers a host directory.
@Suite("Volumes through the control plane", .enabled(if: isRoot, "requires root: proplets create namespaces and cgroups"))
final class VolumeTests {
    func stdout(_ task: [String: Any]) -> String? { (task["result"] as? [String: Any])?["stdout_tail"] as? String }


    @Test func aTaskReadsAHostVolumeAndLeavesANamedOneForTheNext() throws {
        let c = try Cluster()
        let input = c.dir.path + "/input"
        mkdirs(input)
        writeFile(input + "/numbers", "1\n2\n3\n")
        try c.startProplet("p", memory: "2G", extra: ["--host-volume", "input=\(input):ro"])
        let offered = try c.proplet("p")?["host_volumes"] as? [[String: Any]]
        #expect(offered?.count == 1 && offered?.first?["name"] as? String == "input" && offered?.first?["read_only"] as? Bool == true, "\(offered ?? [])")

        let first = try c.create("count", ["--volume", "input:/in:ro", "--volume", "cache:/cache", "--tmpfs", "/scratch:size=1M"],
                                 command: ["sh", "-c", "wc -l < /in/numbers > /cache/count && cp /in/numbers /scratch/ && echo counted"])
        let done = try c.waitForEnd(first)
        #expect(done["state"] as? String == "completed", "\(done)")
        #expect(stdout(done) == "counted\n", "\(done)")
        let volumes = done["volumes"] as? [[String: Any]]
        #expect(volumes?.map { $0["name"] as? String ?? "" } == ["input", "cache"], "task get shows the volumes: \(done)")
        #expect((done["tmpfs"] as? [[String: Any]])?.first?["size_bytes"] as? Int == 1 << 20)
        // The named volume lives on the proplet, and the next task sees what the first left.
        #expect(readFile(c.dir.path + "/proplet-p/volumes/cache/count")?.trimmingCharacters(in: .whitespaces) == "3\n")
        let second = try c.create("read", ["--volume", "cache:/c:ro"], command: ["sh", "-c", "cat /c/count; touch /c/x || echo read-only"])
        let read = try c.waitForEnd(second)
        #expect(read["state"] as? String == "completed", "\(read)")
        #expect(stdout(read)?.replacingOccurrences(of: " ", with: "") == "3\nread-only\n", "\(read)")

        // The named volume is listed with its proplet and size, refused removal while a task
        // uses it, and removed once nothing does.
        func listed() throws -> [[String: Any]] {
            let r = try c.cli(["volume", "list", "--json"])
            return (try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])?["volumes"] as? [[String: Any]] ?? []
        }
        try c.waitUntil("the named volume listed", timeout: 15) { try listed().contains { $0["name"] as? String == "cache" && $0["proplet"] as? String == "p" } }
        #expect((try listed().first { $0["name"] as? String == "cache" }?["size_bytes"] as? Int ?? 0) > 0)
        let holder = try c.create("holder", ["--volume", "cache:/c"], command: ["sleep", "30"])
        try c.waitFor(holder, state: "running")
        try c.waitUntil("the volume in use", timeout: 15) { try listed().first { $0["name"] as? String == "cache" }?["in_use"] as? Int == 1 }
        let busy = try c.cli(["volume", "rm", "cache", "--proplet", "p"])
        #expect(busy.status != 0 && busy.stderrText.contains("in use"), "\(busy.stderrText)")
        _ = try c.cli(["task", "stop", holder, "--grace", "0"])
        try c.waitForEnd(holder)
        try c.waitUntil("the volume free", timeout: 15) { try listed().first { $0["name"] as? String == "cache" }?["in_use"] as? Int == 0 }
        let removed = try c.cli(["volume", "rm", "cache", "--proplet", "p"])
        #expect(removed.status == 0, "\(removed.stderrText)")
        try c.waitUntil("the volume gone", timeout: 15) { try !listed().contains { $0["name"] as? String == "cache" } }
        #expect(!FileManager.default.fileExists(atPath: c.dir.path + "/proplet-p/volumes/cache"))

        // Writing to a host volume that is offered read-only everywhere is never placed.
        let writer = try c.create("writer", ["--volume", "input:/in"], command: ["true"])
        let refused = try c.waitFor(writer, state: "failed")
        #expect(refused["reason"] as? String == "no proplet offers the host volumes input (writable)", "\(refused)")
        #expect(readFile(input + "/numbers") == "1\n2\n3\n")

        // Targets the runtime owns, and host paths, are refused before anything is stored.
        for bad in [["--volume", "cache:/proc/x"], ["--volume", "/etc:/etc"], ["--tmpfs", "relative"], ["--volume", "a:/x", "--tmpfs", "/x"]] {
            let r = try c.cli(["task", "create", "bad", "--image", c.image] + bad)
            #expect(r.status != 0 && !r.stderrText.isEmpty, "\(bad): \(r.stderrText)")
        }
        let api = try c.cli(["task", "list", "--json"])
        #expect(!(api.stdoutText.contains("\"bad\"")), "nothing was stored for a refused create")
        #expect(readFile("/proc/self/mountinfo")?.contains(c.dir.path) == false, "nothing stays mounted on the host")
    }

    /// Every regular file under `root` that holds `needle`.
    func files(under root: String, holding needle: String) -> [String] {
        let bytes = Data(needle.utf8)
        var found: [String] = []
        let walker = FileManager.default.enumerator(atPath: root)
        while let relative = walker?.nextObject() as? String {
            let path = root + "/" + relative
            var st = stat()
            guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, let data = FileManager.default.contents(atPath: path) else { continue }
            if data.range(of: bytes) != nil { found.append(path) }
        }
        return found
    }

    /// A secret is a read-only file of the task's user inside, and nowhere else: not in the
    /// API's answers, the logs, the task's output, the manager's store or the proplet's disk.
    @Test func aSecretIsReadableInsideAndNowhereElse() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        let value = "sv-" + UUID().uuidString
        let source = c.dir.path + "/secret-source"
        writeFile(source, value)
        let created = try c.cli(["secret", "create", "db", "--from-file", source])
        #expect(created.status == 0, "\(created.stderrText)")
        unlink(source)
        let again = try c.cli(["secret", "create", "db", "--from-file", "/etc/hostname"])
        #expect(again.status != 0 && again.stderrText.contains("exists"), "\(again.stderrText)")
        let digest = SHA256.hash(Array(value.utf8)).map { String(format: "%02x", $0) }.joined()

        let id = try c.create("reader", ["--secret", "db", "--secret", "db:/etc/app/token"], command: ["sh", "-c", """
            busybox sha256sum /run/secrets/db /etc/app/token | cut -c1-64
            stat -c '%a %U' /run/secrets/db
            echo x > /run/secrets/db 2>/dev/null || echo read-only
            """])
        let done = try c.waitForEnd(id)
        #expect(done["state"] as? String == "completed", "\(done)")
        #expect(stdout(done) == "\(digest)\n\(digest)\n400 app\nread-only\n", "\(done)")

        let list = try c.cli(["secret", "list"])
        #expect(list.stdoutText.contains("db") && list.stdoutText.contains("\(value.utf8.count)"), "\(list.stdoutText)")
        var seen: [String] = []
        for args in [["secret", "list", "--json"], ["task", "get", id, "--json"], ["task", "logs", id], ["task", "list", "--json"]] {
            let r = try c.cli(args)
            if r.stdoutText.contains(value) || r.stderrText.contains(value) { seen.append(args.joined(separator: " ")) }
        }
        if c.managers[0]?.log.contains(value) == true { seen.append("the manager's log") }
        if c.proplets["p"]?.log.contains(value) == true { seen.append("the proplet's log") }
        // The proplet's data directory and the manager's (its store) are both in here.
        seen += files(under: c.dir.path, holding: value)
        #expect(seen.isEmpty, "the secret's value showed up in \(seen)")

        // In another namespace the same name is another secret, and its tasks get that one.
        #expect(try c.cli(["namespace", "create", "team-a"]).status == 0)
        let teamValue = "team-" + UUID().uuidString
        writeFile(source, teamValue)
        #expect(try c.cli(["secret", "create", "db", "-n", "team-a", "--from-file", source]).status == 0)
        unlink(source)
        let teamTask = try c.create("team-reader", ["-n", "team-a", "--secret", "db"], command: ["cat", "/run/secrets/db"])
        let teamDone = try c.waitForEnd(teamTask)
        #expect(stdout(teamDone) == teamValue, "\(teamDone)")
        #expect(try c.cli(["secret", "list"]).stdoutText.split(separator: "\n").filter { $0.contains("db") }.count == 1)

        // A task started after the secret was removed fails, naming it.
        #expect(try c.cli(["secret", "rm", "db"]).status == 0)
        let missing = try c.cli(["task", "create", "late", "--image", c.image, "--secret", "db"])
        #expect(missing.status != 0 && missing.stderrText.contains("no secret db"), "\(missing.stderrText)")
    }

    /// Artifacts from a real HTTP server on the loopback (busybox httpd): a file checked against
    /// its digest, an archive unpacked, a wrong digest and a hostile archive failing the task
    /// with the reason, and no plain http:// beyond the loopback.
    @Test func artifactsAreFetchedCheckedAndUnpacked() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        let site = c.dir.path + "/site"
        mkdirs(site + "/tool/bin")
        writeFile(site + "/data.txt", "artifact data\n")
        writeFile(site + "/tool/bin/run.sh", "echo tool ran\n")
        #expect(try runProcess("/bin/tar", ["-C", site + "/tool", "-czf", site + "/tool.tar.gz", "bin"]).status == 0)
        // An archive whose entry climbs out of where it is unpacked.
        #expect(try runProcess("/usr/bin/python3", ["-c", """
            import tarfile, io
            t = tarfile.open('\(site)/evil.tar', 'w')
            data = b'escaped'
            info = tarfile.TarInfo('../../../../../../../tmp/propeller-artifact-escape')
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
            t.close()
            """]).status == 0)
        let port = try freeLoopbackPort()
        let server = try DaemonProcess("/bin/busybox", ["httpd", "-f", "-p", "127.0.0.1:\(port)", "-h", site], logPath: c.dir.path + "/httpd.log")
        defer { server.stop() }
        try c.waitUntil("httpd listens", timeout: 10) { canConnect(port: port) }
        let base = "http://127.0.0.1:\(port)"
        let digest = SHA256.hash(Array("artifact data\n".utf8)).map { String(format: "%02x", $0) }.joined()

        let ok = try c.create("fetch", ["--artifact", "\(base)/data.txt#sha256=\(digest)", "--artifact", "\(base)/tool.tar.gz=/opt/tool"],
                              command: ["sh", "-c", "cat /local/data.txt && sh /opt/tool/bin/run.sh"])
        let done = try c.waitForEnd(ok)
        #expect(done["state"] as? String == "completed", "\(done)")
        #expect(stdout(done) == "artifact data\ntool ran\n", "\(done)")

        let wrong = try c.create("wrong", ["--artifact", "\(base)/data.txt#sha256=\(String(repeating: "0", count: 64))"], command: ["true"])
        let refused = try c.waitForEnd(wrong)
        #expect(refused["state"] as? String == "failed")
        #expect(((refused["result"] as? [String: Any])?["error"] as? String)?.contains("its sha256 is \(digest)") == true, "\(refused)")

        let evil = try c.create("evil", ["--artifact", "\(base)/evil.tar=/opt/evil"], command: ["true"])
        let contained = try c.waitForEnd(evil)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/propeller-artifact-escape"), "\(contained)")
        #expect(!FileManager.default.fileExists(atPath: c.dir.path + "/tmp/propeller-artifact-escape"))

        // Into a volume: the files stay for the next task; a symlink a task left there is not
        // followed out of it.
        let planter = try c.create("planter", ["--volume", "kit:/kit", "--user", "0"], command: ["busybox", "ln", "-s", "/etc", "/kit/evil"])
        #expect(try c.waitForEnd(planter)["state"] as? String == "completed")
        let into = try c.create("into", ["--volume", "kit:/kit", "--artifact", "\(base)/tool.tar.gz=/kit/tools", "--artifact", "\(base)/data.txt=/kit/in/data.txt"],
                                command: ["true"])
        #expect(try c.waitForEnd(into)["state"] as? String == "completed")
        let reader = try c.create("reader", ["--volume", "kit:/kit"], command: ["sh", "-c", "cat /kit/in/data.txt && sh /kit/tools/bin/run.sh"])
        let read = try c.waitForEnd(reader)
        #expect(stdout(read) == "artifact data\ntool ran\n", "\(read)")
        let marker = "propeller-artifact-\(UUID().uuidString.prefix(8))"
        let through = try c.create("through", ["--volume", "kit:/kit", "--artifact", "\(base)/data.txt=/kit/evil/\(marker)"], command: ["true"])
        let refusedThrough = try c.waitForEnd(through)
        #expect(refusedThrough["state"] as? String == "failed" && ((refusedThrough["result"] as? [String: Any])?["error"] as? String)?.contains("symlink") == true,
                "\(refusedThrough)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/\(marker)"))

        let plain = try c.cli(["task", "create", "plain", "--image", c.image, "--artifact", "http://example.com/x.tar"])
        #expect(plain.status != 0 && plain.stderrText.contains("https"), "\(plain.stderrText)")
        let missing = try c.create("missing", ["--artifact", "\(base)/nothing-here"], command: ["true"])
        let notFound = try c.waitForEnd(missing)
        #expect(((notFound["result"] as? [String: Any])?["error"] as? String)?.contains("HTTP 404") == true, "\(notFound)")
    }

    /// A task's --output directory, kept on its proplet and fetched through the manager: listed,
    /// copied byte for byte (a binary file over several chunks, a file in a subdirectory), its
    /// symlinks resolved inside it, and dropped when over the proplet's limit.
    @Test func outputsRoundTripByteForByte() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G", extra: ["--output-limit", "4M"])
        let id = try c.create("make", ["--output", "/out", "--user", "0"], command: ["sh", "-c", """
            mkdir -p /out/sub && echo report > /out/sub/report.txt
            dd if=/dev/urandom of=/out/blob.bin bs=64k count=40 2>/dev/null
            ln -s /etc/passwd /out/passwd
            echo done
            """])
        let done = try c.waitForEnd(id)
        #expect(done["state"] as? String == "completed", "\(done)")
        let summary = (done["result"] as? [String: Any])?["outputs"] as? [String: Any]
        #expect(summary?["files"] as? Int == 2 && summary?["kept"] as? Bool == true, "\(done)")
        let kept = c.dir.path + "/proplet-p/outputs/\(id)/1"
        let listing = try c.cli(["task", "outputs", id, "--json"])
        #expect(listing.stdoutText.contains("sub/report.txt") && listing.stdoutText.contains("blob.bin") && !listing.stdoutText.contains("passwd"),
                "\(listing.stdoutText) \(listing.stderrText)")
        let local = c.dir.path + "/blob.copy"
        let copied = try c.cli(["task", "cp", "\(id):/out/blob.bin", local])
        #expect(copied.status == 0, "\(copied.stderrText)")
        #expect(FileManager.default.contents(atPath: local) == FileManager.default.contents(atPath: kept + "/blob.bin"), "byte for byte")
        #expect(FileManager.default.contents(atPath: local)?.count == 40 * 65536)
        let report = try c.cli(["task", "cp", "\(id):sub/report.txt", "-"])
        #expect(report.stdoutText == "report\n", "\(report.stderrText)")
        // The task's symlink to /etc/passwd resolves inside its outputs: nothing there.
        let link = try c.cli(["task", "cp", "\(id):passwd", "-"])
        #expect(link.status != 0 && !link.stdoutText.contains("root:"), "\(link.stdoutText)")
        let outside = try curl("GET", "http://127.0.0.1:\(c.httpPort)/tasks/\(id)/outputs/sub/../../1/blob.bin", token: c.token)
        #expect(outside.status == 422 || outside.status == 404, "\(outside)")
        let missing = try c.cli(["task", "cp", "\(id):nothing", "-"])
        #expect(missing.status != 0 && missing.stderrText.contains("no file nothing"), "\(missing.stderrText)")

        // Over the proplet's limit: not kept, and the result says so.
        let big = try c.create("big", ["--output", "/out", "--user", "0"], command: ["sh", "-c", "dd if=/dev/zero of=/out/z bs=1M count=5 2>/dev/null"])
        let bigDone = try c.waitForEnd(big)
        let bigSummary = (bigDone["result"] as? [String: Any])?["outputs"] as? [String: Any]
        #expect(bigSummary?["kept"] as? Bool == false && (bigSummary?["reason"] as? String)?.contains("--output-limit") == true, "\(bigDone)")
        #expect(!FileManager.default.fileExists(atPath: c.dir.path + "/proplet-p/outputs/\(big)/1"))
        let refused = try c.cli(["task", "outputs", big])
        #expect(refused.status != 0 && refused.stderrText.contains("not kept"), "\(refused.stderrText)")
    }

    /// A named volume with a size limit: a file system of its own, full at its size, kept for
    /// the next task, mounted again after the proplet restarts, and gone (mount and image) when
    /// removed or when the proplet stops.
    @Test func aSizedNamedVolumeFillsUpAtItsLimit() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        let volume = (c.dir.path + "/proplet-p/volumes/quota").replacingOccurrences(of: "//", with: "/")  // as mountinfo spells it
        let first = try c.create("fill", ["--volume", "quota:/q:size=16M", "--user", "0"], command: ["sh", "-c", """
            dd if=/dev/zero of=/q/fits bs=1M count=4 2>/dev/null && echo fits
            dd if=/dev/zero of=/q/big bs=1M count=32 2>/dev/null || echo full
            rm -f /q/big
            """])
        let done = try c.waitForEnd(first)
        #expect(stdout(done) == "fits\nfull\n", "\(done)")
        #expect(readFile("/proc/self/mountinfo")?.contains(" \(volume) ") == true, "its own file system")
        // The same size again, or none: the same volume; another size: refused.
        let again = try c.create("again", ["--volume", "quota:/q"], command: ["sh", "-c", "ls -s /q/fits | cut -c1-5"])
        let againDone = try c.waitForEnd(again)
        #expect(againDone["state"] as? String == "completed", "\(againDone) \(volume)")
        let resized = try c.create("resized", ["--volume", "quota:/q:size=32M"], command: ["true"])
        let refused = try c.waitForEnd(resized)
        #expect(((refused["result"] as? [String: Any])?["error"] as? String)?.contains("remove it") == true, "\(refused)")
        // A stopped proplet leaves nothing mounted; started again, the data is there.
        c.stopProplet("p")
        #expect(readFile("/proc/self/mountinfo")?.contains(volume) == false)
        try c.startProplet("p", memory: "2G")
        let after = try c.create("after", ["--volume", "quota:/q:size=16M"], command: ["sh", "-c", "test -f /q/fits && echo kept"])
        #expect(stdout(try c.waitForEnd(after)) == "kept\n")
        try c.waitUntil("the volume listed", timeout: 15) {
            (try c.cli(["volume", "list", "--json"]).stdoutText).contains("quota")
        }
        #expect(try c.cli(["volume", "rm", "quota", "--proplet", "p"]).status == 0)
        try c.waitUntil("the volume removed", timeout: 15) { !FileManager.default.fileExists(atPath: volume) }
        #expect(readFile("/proc/self/mountinfo")?.contains(volume) == false)
        #expect(!FileManager.default.fileExists(atPath: c.dir.path + "/proplet-p/volumes/.sized/quota.ext4"))
        let tooSmall = try c.cli(["task", "create", "x", "--image", c.image, "--volume", "tiny:/t:size=1M"])
        #expect(tooSmall.status != 0 && tooSmall.stderrText.contains("16M"), "\(tooSmall.stderrText)")
    }
}
