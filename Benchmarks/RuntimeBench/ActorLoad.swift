#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerImage

/// `propeller-bench actors`: load on a manager's actor API.
///
///   propeller-bench actors throughput --url URL --token T --actor ID --messages N [--concurrency C]
///       posts N messages from C threads (202 each), then waits until all N executions are
///       final; prints executions per second from the first post to the last completion
///   propeller-bench actors sync --url URL --token T --actor ID --messages N [--out FILE]
///       N synchronous calls one after another; one wall time in ms per line
enum ActorLoad {
    static func run(_ args: [String]) {
        guard let url = option("--url", in: args), let token = option("--token", in: args), let actor = option("--actor", in: args) else {
            fail("actors: --url, --token and --actor are required")
        }
        let n = Int(option("--messages", in: args) ?? "500") ?? 500
        let base = url + "/actors/" + actor
        let headers = ["Authorization: Bearer \(token)", "Content-Type: text/plain"]
        switch args.dropFirst().first {
        case "throughput":
            let threads = Int(option("--concurrency", in: args) ?? "8") ?? 8
            let before = completed(base, headers)
            let next = Counter()
            let t0 = now()
            var workers: [Thread] = []
            let group = DispatchGroup()
            for _ in 0..<threads {
                group.enter()
                let t = Thread {
                    while next.take() < n { post(base + "/messages", headers, "m", expect: 202) }
                    group.leave()
                }
                t.start()
                workers.append(t)
            }
            group.wait()
            let posted = now()
            while completed(base, headers) < before + n { usleep(10_000) }
            let done = now()
            print(String(format: "%d executions in %.0f ms (posting took %.0f ms): %.1f executions/s", n, done - t0, posted - t0, Double(n) / ((done - t0) / 1000)))
        case "sync":
            var times: [Double] = []
            for _ in 0..<n {
                let t0 = now()
                post(base + "/messages?sync=true&timeout=30", headers, "m", expect: 200)
                times.append(now() - t0)
            }
            emit(times, to: option("--out", in: args))
        default:
            fail("actors: throughput or sync")
        }
    }

    static func post(_ url: String, _ headers: [String], _ body: String, expect: Int) {
        var transport = HTTPTransport()
        transport.connectTimeoutSeconds = 10
        do {
            let r = try transport.send("POST", url, headers: headers, body: Array(body.utf8), followRedirects: false) { _, _ in }
            if r.status != expect { fail("POST \(url): HTTP \(r.status)") }
        } catch {
            fail("POST \(url): \(error)")
        }
    }

    /// Final executions of the actor so far (complete and error).
    static func completed(_ base: String, _ headers: [String]) -> Int {
        let transport = HTTPTransport()
        var body: [UInt8] = []
        do {
            _ = try transport.send("GET", base + "/executions?limit=1", headers: headers, followRedirects: false) { _, bytes in body.append(contentsOf: bytes) }
        } catch {
            fail("GET executions: \(error)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], let totals = object["totals"] as? [String: Any] else {
            fail("GET executions: unexpected answer")
        }
        return (totals["complete"] as? Int ?? 0) + (totals["error"] as? Int ?? 0)
    }
}

/// A shared counter for the posting threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func take() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value - 1
    }
}
