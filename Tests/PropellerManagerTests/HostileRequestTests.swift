import Foundation
import HummingbirdTesting
import Hummingbird
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

@Suite("Hostile API requests")
struct HostileRequestTests {
    /// A 500 names no file, no SQL and no errno: those stay in the manager's log, with the id
    /// the answer gives.
    @Test func internalErrorsKeepTheirDetailsInTheLog() async throws {
        let router = Router()
        router.add(middleware: ErrorAndMetricsMiddleware(metrics: ManagerMetrics()))
        router.get("/boom") { _, _ -> String in
            throw PropellerError(.systemCall, "SQLite error 14: unable to open database file /var/lib/propeller/manager/manager.db - while executing `SELECT * FROM tasks`")
        }
        try await Application(router: router).test(.router) { client in
            try await client.execute(uri: "/boom", method: .get) { response in
                #expect(response.status == .internalServerError)
                let body = String(buffer: response.body)
                #expect(body.contains("internal error"))
                #expect(!body.contains("/var/lib") && !body.contains("SELECT") && !body.contains("SQLite"), "\(body)")
            }
        }
    }

    /// Request bodies, fuzzed through the parsing and checking the API does (see ``Fuzzer``):
    /// anything may be refused, nothing may trap, and what is accepted is within the limits.
    @Test func taskAndActorBodiesFuzzed() {
        let seeds = [
            #"{"name":"x","image":"127.0.0.1:5000/app:v1","command":["sh","-c","echo"],"env":{"A":"b"},"resources":{"cpu_millis":500,"memory_bytes":67108864,"pids":10},"timeout_seconds":5,"restart_policy":{"mode":"on-failure","max_attempts":3},"network":"none","start":true}"#,
            #"{"name":"a","image":"r.example/app:v1","resources":{"memory_bytes":0},"min_workers":0,"max_workers":3,"stateless":true,"timeout_seconds":30}"#,
        ].map { Array($0.utf8) }
        Fuzzer.run("api-bodies", seeds: seeds) { bytes in
            if let body = try? TaskRequest.parse(bytes), let spec = try? TaskRequest.spec(from: body) {
                precondition(spec.timeoutSeconds.map { InputLimits.timeoutSeconds.contains($0) } ?? true)
                precondition(InputLimits.pids.contains(spec.resources.pids) && InputLimits.memoryBytes.contains(spec.resources.memoryBytes))
            }
            if let body = try? ActorRequest.parse(bytes) { _ = try? ActorRequest.spec(from: body) }
        }
    }
}
