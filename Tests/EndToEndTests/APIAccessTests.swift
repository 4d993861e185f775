import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Roles, expiry, rotation and the audit log through the real binaries: the CLI against a
/// manager on a real broker and SQLite file, restarted in the middle.
@Suite("API access through the CLI", .serialized)
struct APIAccessTests {
    /// Makes a token with `propeller token create`; returns its secret and id.
    func token(_ c: Cluster, _ name: String, role: String, extra: [String] = []) throws -> (secret: String, id: String) {
        let made = try c.cli(["token", "create", name, "--role", role, "--json"] + extra)
        #expect(made.status == 0, "\(made.stderrText)")
        let body = try #require(try JSONSerialization.jsonObject(with: made.stdout) as? [String: Any])
        return (try #require(body["token"] as? String), try #require(body["id"] as? String))
    }

    func run(_ c: Cluster, _ secret: String, _ args: [String]) throws -> CLIResult {
        try propeller(args, environment: ["PROPELLER_MANAGER_URL": c.managerURL, "PROPELLER_API_TOKEN": secret])
    }

    @Test func rolesDecideWhatATokenMayDoAndTheAuditLogSaysWhoDidWhat() throws {
        let c = try Cluster(proxy: false)
        let developer = try token(c, "laptop", role: "developer", extra: ["--identity", "alice", "--expires", "30d"])
        let viewer = try token(c, "dash", role: "viewer")
        let operatorToken = try token(c, "fleet", role: "operator")
        let invoker = try token(c, "hook", role: "invoker")
        let bad = try c.cli(["token", "create", "x", "--role", "root"])
        #expect(bad.status != 0 && bad.stderrText.contains("unknown role \"root\""), "\(bad.stderrText)")

        let list = try c.cli(["token", "list", "-o", "wide"])
        #expect(list.stdoutText.contains("developer") && list.stdoutText.contains("alice") && list.stdoutText.contains("in 29d"), "\(list.stdoutText)")
        let me = try run(c, developer.secret, ["token", "whoami"])
        #expect(me.status == 0 && me.stdoutText.contains("alice") && me.stdoutText.contains("tasks:exec"), "\(me.stdoutText)\(me.stderrText)")

        // A developer creates work; a viewer reads it and may not change it; an operator and an
        // invoker see no task at all.
        let created = try run(c, developer.secret, ["task", "create", "job", "--image", c.image, "--", "true"])
        #expect(created.status == 0, "\(created.stderrText)")
        let task = created.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try run(c, viewer.secret, ["task", "get", task]).status == 0)
        let refused = try run(c, viewer.secret, ["task", "delete", task])
        #expect(refused.status != 0 && refused.stderrText.contains("lacks permission tasks:write"), "\(refused.stderrText)")
        #expect(try run(c, operatorToken.secret, ["proplet", "list"]).status == 0)
        #expect(try run(c, operatorToken.secret, ["task", "list"]).stderrText.contains("lacks permission tasks:read"))
        #expect(try run(c, invoker.secret, ["task", "list"]).stderrText.contains("role invoker"))
        let notAdmin = try run(c, developer.secret, ["token", "create", "mine", "--role", "admin"])
        #expect(notAdmin.status != 0 && notAdmin.stderrText.contains("tokens:manage"), "\(notAdmin.stderrText)")

        // Rotation by the holder: the old secret stops at once, the new one works.
        let rotated = try run(c, developer.secret, ["token", "rotate", developer.id])
        let fresh = rotated.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(rotated.status == 0 && fresh.hasPrefix("ptk_"), "\(rotated.stderrText)")
        #expect(try run(c, developer.secret, ["task", "list"]).stderrText.contains("invalid bearer token"))
        #expect(try run(c, fresh, ["task", "list"]).status == 0)

        // Expiry, and the restart: tokens, roles and the log survive it.
        let brief = try token(c, "brief", role: "viewer", extra: ["--expires", "1s"])
        c.stopManager()
        try c.startManager()
        #expect(try run(c, fresh, ["task", "get", task]).status == 0)
        #expect(try run(c, viewer.secret, ["task", "delete", task]).stderrText.contains("lacks permission tasks:write"))
        usleep(1_100_000)
        let expired = try run(c, brief.secret, ["task", "list"])
        #expect(expired.status != 0 && expired.stderrText.contains("token expired at"), "\(expired.stderrText)")

        // The log, as an admin sees it: who, what, how it ended, from where.
        let audit = try c.cli(["audit", "-o", "json", "--limit", "1000"])
        #expect(audit.status == 0, "\(audit.stderrText)")
        let entries = try #require((try JSONSerialization.jsonObject(with: audit.stdout) as? [String: Any])?["entries"] as? [[String: Any]])
        func has(_ identity: String, _ request: String, _ status: Int) -> Bool {
            entries.contains { "\($0["method"] ?? "") \($0["path"] ?? "")" == request && $0["identity"] as? String == identity && $0["status"] as? Int == status
                && $0["peer"] as? String == "127.0.0.1" }
        }
        #expect(has("alice", "POST /tasks", 201))
        #expect(has("dash", "DELETE /tasks/\(task)", 403))
        #expect(has("alice", "POST /tokens", 403))
        #expect(has("alice", "POST /tokens/\(developer.id)/rotate", 200))
        #expect(entries.filter { $0["path"] as? String == "/tokens" && $0["status"] as? Int == 201 }.count == 5)
        #expect(!entries.contains { $0["method"] as? String == "GET" && $0["status"] as? Int == 200 && ($0["path"] as? String)?.hasPrefix("/tasks") == true },
                "reads that were let through are not audited")
        let table = try c.cli(["audit", "--limit", "1000"])
        #expect(table.stdoutText.contains("DELETE /tasks/\(task)") && table.stdoutText.contains("viewer"), "\(table.stdoutText)\(table.stderrText)")
        #expect(try run(c, viewer.secret, ["audit"]).stderrText.contains("lacks permission audit:read"))
        #expect(!(c.manager?.log.contains(fresh) ?? true), "a token never appears in the log")
    }

    /// Retention: a revoked token is forgotten once `--token-retention` has passed; a live one
    /// stays, and the audit log keeps what it recorded (no `--audit-retention`).
    @Test func revokedTokensAreForgottenAfterTheirRetention() throws {
        let c = try Cluster(proxy: false, managerArguments: ["--token-retention", "1s"])
        let gone = try token(c, "short-lived", role: "viewer")
        let kept = try token(c, "kept", role: "viewer")
        #expect(try c.cli(["token", "revoke", gone.id]).status == 0)
        try c.waitUntil("the revoked token forgotten", timeout: 15) { try !c.cli(["token", "list"]).stdoutText.contains(gone.id) }
        #expect(try c.cli(["token", "list"]).stdoutText.contains(kept.id))
        #expect(try run(c, kept.secret, ["token", "whoami"]).status == 0)
        #expect(try run(c, gone.secret, ["token", "whoami"]).status != 0)
        #expect(try c.cli(["audit"]).stdoutText.contains("/tokens/\(gone.id)"), "the audit log keeps the revocation")
        #expect(c.manager?.log.contains("revoked and expired API tokens forgotten") == true)
    }

    /// Offboarding: `token revoke --identity alice` revokes every token alice holds and nobody
    /// else's; a namespace's admin reaches only its namespace's.
    @Test func everyTokenOfAnIdentityIsRevokedAtOnce() throws {
        let c = try Cluster(proxy: false)
        #expect(try c.cli(["namespace", "create", "team-a"]).status == 0)
        let laptop = try token(c, "laptop", role: "developer", extra: ["--identity", "alice"])
        let inTeam = try token(c, "team", role: "viewer", extra: ["--identity", "alice", "-n", "team-a"])
        let bob = try token(c, "bob", role: "developer", extra: ["--identity", "bob"])
        let teamAdmin = try token(c, "lead", role: "admin", extra: ["--identity", "lead", "-n", "team-a"])
        // team-a's admin revokes alice's team-a token alone.
        let scoped = try run(c, teamAdmin.secret, ["token", "revoke", "--identity", "alice"])
        #expect(scoped.status == 0 && scoped.stdoutText.contains("revoked 1 token") && scoped.stdoutText.contains(inTeam.id), "\(scoped.stdoutText)\(scoped.stderrText)")
        #expect(try run(c, laptop.secret, ["token", "whoami"]).status == 0)
        let all = try c.cli(["token", "revoke", "--identity", "alice"])
        #expect(all.status == 0 && all.stdoutText.contains(laptop.id), "\(all.stdoutText)\(all.stderrText)")
        #expect(try run(c, laptop.secret, ["token", "whoami"]).status != 0)
        #expect(try run(c, bob.secret, ["token", "whoami"]).status == 0, "another identity's token still works")
        let none = try c.cli(["token", "revoke", "--identity", "alice"])
        #expect(none.status != 0 && none.stderrText.contains("no live token of identity alice"), "\(none.stderrText)")
        #expect(try c.cli(["token", "revoke"]).status != 0, "an id or --identity")
    }

    @Test func namespacesThroughTheCLI() throws {
        let c = try Cluster(proxy: false)
        #expect(try c.cli(["namespace", "create", "team-a"]).status == 0)
        let bad = try c.cli(["namespace", "create", "Team_A"])
        #expect(bad.status != 0 && bad.stderrText.contains("invalid namespace"), "\(bad.stderrText)")
        let dev = try token(c, "alice", role: "developer", extra: ["-n", "team-a"])
        let me = try run(c, dev.secret, ["token", "whoami"])
        #expect(me.stdoutText.contains("team-a") && !me.stdoutText.contains("tokens:manage"), "\(me.stdoutText)")

        let mine = try run(c, dev.secret, ["task", "create", "job", "--image", c.image, "--", "true"])
        #expect(mine.status == 0, "\(mine.stderrText)")
        let id = mine.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let other = try c.cli(["task", "create", "theirs", "--image", c.image, "--", "true"])
        let otherID = other.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)

        #expect(try run(c, dev.secret, ["task", "list"]).stdoutText.contains(id))
        #expect(!(try run(c, dev.secret, ["task", "list"]).stdoutText.contains(otherID)))
        #expect(!(try c.cli(["task", "list"]).stdoutText.contains(id)), "an admin's list is of default unless told")
        #expect(try c.cli(["task", "list", "-n", "team-a"]).stdoutText.contains(id))
        let everywhere = try c.cli(["task", "list", "-n", "*"]).stdoutText
        #expect(everywhere.contains(id) && everywhere.contains(otherID))
        let hidden = try run(c, dev.secret, ["task", "get", otherID])
        #expect(hidden.status != 0 && hidden.stderrText.contains("no task \(otherID) in namespace team-a"), "\(hidden.stderrText)")
        let outside = try propeller(["task", "list"], environment: ["PROPELLER_MANAGER_URL": c.managerURL, "PROPELLER_API_TOKEN": dev.secret,
                                                                  "PROPELLER_NAMESPACE": "default"])
        #expect(outside.status != 0 && outside.stderrText.contains("may not work in namespace default"), "\(outside.stderrText)")
        let cluster = try run(c, dev.secret, ["proplet", "drain", "p"])
        #expect(cluster.status != 0 && cluster.stderrText.contains("lacks permission proplets:manage"), "\(cluster.stderrText)")

        // A quota: what can never fit is refused at once, with the reason.
        #expect(try c.cli(["namespace", "quota", "team-a", "--memory", "1G", "--tasks", "4"]).status == 0)
        let big = try run(c, dev.secret, ["task", "create", "big", "--image", c.image, "--memory", "2G", "--", "true"])
        #expect(big.status != 0 && big.stderrText.contains("memory quota is 1 GiB"), "\(big.stderrText)")
        let shown = try c.cli(["namespace", "get", "team-a"])
        #expect(shown.stdoutText.contains("1, 0 active of 4 placed at once") && shown.stdoutText.contains("of 1 GiB"), "\(shown.stdoutText)")
        let busy = try c.cli(["namespace", "delete", "team-a"])
        #expect(busy.status != 0 && busy.stderrText.contains("holds 1 task"), "\(busy.stderrText)")
        // Names and id prefixes are handles, within the namespace.
        #expect(try run(c, dev.secret, ["task", "get", "job", "--json"]).stdoutText.contains(id))
        #expect(try c.cli(["task", "get", "job", "-n", "team-a", "--json"]).stdoutText.contains(id))
        #expect(try c.cli(["task", "get", "theirs", "--json"]).stdoutText.contains(otherID))
        #expect(try run(c, dev.secret, ["task", "get", "theirs"]).status != 0)
        #expect(try run(c, dev.secret, ["task", "delete", String(id.prefix(8))]).status == 0)
        // The namespace and the binding survive a restart.
        c.stopManager()
        try c.startManager()
        #expect(try c.cli(["namespace", "list"]).stdoutText.contains("team-a"))
        #expect(try c.cli(["namespace", "get", "team-a"]).stdoutText.contains("of 1 GiB"), "the quota is kept")
        #expect(try run(c, dev.secret, ["task", "get", otherID]).status != 0)
        #expect(try c.cli(["namespace", "delete", "team-a"]).status == 0)
        #expect(try run(c, dev.secret, ["task", "list"]).stderrText.contains("no namespace team-a"))
    }

    /// An outside system with a nonce and curl, no account: twice, then refused.
    @Test func aNonceLetsAnOutsideSystemMessageAnActorTwice() throws {
        let c = try Cluster(proxy: false)
        #expect(try c.cli(["actor", "create", "echoer", "--image", c.image, "--memory", "64M", "--", "true"]).status == 0)
        let made = try c.cli(["actor", "nonce", "create", "echoer", "--uses", "2"])
        #expect(made.status == 0, "\(made.stderrText)")
        let nonce = made.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        func post() throws -> String {
            let r = try runProcess("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: text/plain",
                                                      "--data", "hello", "\(c.managerURL)/actors/echoer/messages?x-nonce=\(nonce)"])
            return String(decoding: r.stdout, as: UTF8.self)
        }
        #expect(try post() == "202")
        #expect(try post() == "202")
        #expect(try post() == "401")
        let listed = try c.cli(["actor", "nonce", "list", "echoer"])
        #expect(listed.stdoutText.contains("2 of 2") && listed.stdoutText.contains("execute"), "\(listed.stdoutText)")
        let executions = try c.cli(["actor", "executions", "echoer", "--json"])
        #expect(executions.stdoutText.components(separatedBy: "\"id\"").count - 1 == 2, "two messages queued: \(executions.stdoutText)")
        #expect(!(c.manager?.log.contains(nonce) ?? true), "a nonce never appears in the log")
    }

    /// A task's own token (`--api-token-role invoker`): it messages the actors of its namespace,
    /// nothing else, and dies with the attempt.
    @Test(.enabled(if: isRoot, "requires root: proplets run containers"))
    func aTaskMessagesExactlyTheActorsOfItsNamespaceWithItsOwnToken() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("p", memory: "2G", extra: ["--image-source", "direct"])
        #expect(try c.cli(["namespace", "create", "team-a"]).status == 0)
        #expect(try c.cli(["actor", "create", "inbox", "-n", "team-a", "--image", c.image, "--memory", "64M", "--min-workers", "0", "--", "true"]).status == 0)
        #expect(try c.cli(["actor", "create", "elsewhere", "--image", c.image, "--memory", "64M", "--min-workers", "0", "--", "true"]).status == 0)
        let script = """
            T=$(cat /run/secrets/propeller-api-token)
            for path in /actors/inbox/messages /actors/elsewhere/messages /tasks; do
              out=$(busybox wget -q -O /dev/null --header "Authorization: Bearer $T" --post-data '{}' "\(c.managerURL)$path" 2>&1) && echo "$path ok" || echo "$path $out"
            done
            """
        let task = try c.create("caller", ["-n", "team-a", "--api-token-role", "invoker", "--network", "host"], command: ["sh", "-c", script])
        let done = try c.waitForEnd(task)
        let output = (done["result"] as? [String: Any])?["stdout_tail"] as? String ?? ""
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(done)")
        #expect(lines.first == "/actors/inbox/messages ok", "\(lines)")
        #expect(lines.dropFirst().first?.contains("404") == true, "another namespace's actor is not there: \(lines)")
        #expect(lines.last?.contains("403") == true, "an invoker starts no task: \(lines)")
        // The token is the attempt's: revoked once it ended, and never in a log.
        let tokens = try c.cli(["token", "list", "-o", "json"])
        let all = try #require((try JSONSerialization.jsonObject(with: tokens.stdout) as? [String: Any])?["tokens"] as? [[String: Any]])
        let own = try #require(all.first { ($0["identity"] as? String) == "task:\(task)" })
        #expect(own["role"] as? String == "invoker" && own["namespace"] as? String == "team-a" && own["revoked_at"] != nil, "\(own)")
        #expect(own["expires_at"] != nil)
        // Asking for a role that is not a task's is refused.
        let admin = try c.cli(["task", "create", "x", "--image", c.image, "--api-token-role", "admin"])
        #expect(admin.status != 0 && admin.stderrText.contains("api_token_role"), "\(admin.stderrText)")

        // An actor's executions get theirs too (Abaco's client generator): each one its own
        // token, which messages team-a's inbox and nothing else, revoked when it ends.
        let relayScript = """
            T=$(cat /run/secrets/propeller-api-token)
            for path in /actors/inbox/messages /actors/elsewhere/messages /tasks; do
              out=$(busybox wget -q -O /dev/null --header "Authorization: Bearer $T" --post-data '{}' "\(c.managerURL)$path" 2>&1) && echo "$path ok" || echo "$path $out"
            done > "$PROPELLER_RESULTS"
            """
        let relay = try c.cli(["actor", "create", "relay", "-n", "team-a", "--image", c.image, "--memory", "64M", "--network", "host",
                               "--api-token-role", "invoker", "--", "sh", "-c", relayScript])
        try #require(relay.status == 0, "\(relay.stderrText)")
        let relayID = relay.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        var reply = try c.cli(["actor", "send", "relay", "-n", "team-a", "go", "--sync"])
        for _ in 0..<50 where reply.status != 0 || reply.stdoutText.isEmpty {
            usleep(200_000)  // the first worker may still be preparing
            reply = try c.cli(["actor", "send", "relay", "-n", "team-a", "go", "--sync"])
        }
        let results = reply.stdoutText.split(separator: "\n").map(String.init)
        #expect(results.first == "/actors/inbox/messages ok", "\(results) \(reply.stderrText)")
        #expect(results.count == 3 && results[1].contains("404") && results[2].contains("403"), "\(results)")
        let after = try #require((try JSONSerialization.jsonObject(with: try c.cli(["token", "list", "-o", "json"]).stdout) as? [String: Any])?["tokens"] as? [[String: Any]])
        let executionTokens = after.filter { ($0["identity"] as? String) == "actor:\(relayID)" }
        #expect(!executionTokens.isEmpty && executionTokens.allSatisfy { $0["role"] as? String == "invoker" && $0["namespace"] as? String == "team-a" },
                "\(executionTokens)")
        try c.waitUntil("the executions' tokens revoked", timeout: 10) {
            let now = (try JSONSerialization.jsonObject(with: try c.cli(["token", "list", "-o", "json"]).stdout) as? [String: Any])?["tokens"] as? [[String: Any]] ?? []
            return now.filter { ($0["identity"] as? String) == "actor:\(relayID)" }.allSatisfy { $0["revoked_at"] != nil }
        }
        let adminActor = try c.cli(["actor", "create", "boss", "--image", c.image, "--api-token-role", "operator", "--", "true"])
        #expect(adminActor.status != 0 && adminActor.stderrText.contains("api_token_role"), "\(adminActor.stderrText)")
    }
}
