import Foundation
import PropellerCore
import Testing

@Suite("Wire messages and topics")
struct WireMessagesTests {
    @Test func messagesUseSnakeCaseKeysAndRoundTrip() throws {
        let start = StartTask(taskId: "t1", attempt: 2, name: "hello", image: "127.0.0.1:5000/app:v1", command: ["echo", "hi"], env: ["PATH_EXTRA": "/x"],
                              workdir: "/w", user: "app", resources: Resources(cpuMillis: 500, memoryBytes: 64 << 20, pids: 10), timeoutSeconds: 1.5, network: "none")
        let bytes = try WireCoding.encode(start)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"task_id\":\"t1\""))
        #expect(text.contains("\"cpu_millis\":500"))
        #expect(text.contains("\"timeout_seconds\":1.5"))
        #expect(text.contains("\"PATH_EXTRA\":\"/x\""))  // map keys are not converted
        #expect(try WireCoding.decode(StartTask.self, from: bytes) == start)

        let result = TaskResult(taskId: "t1", attempt: 2, propletId: "p", state: .failed, exitCode: 137, signal: 9, oomKilled: true,
                                usage: TaskUsage(cpuUsec: 10, memoryPeakBytes: 20), stdoutTail: "a", stderrTail: "b")
        #expect(try WireCoding.decode(TaskResult.self, from: WireCoding.encode(result)) == result)
        let hb = PropletHeartbeat(propletId: "p", status: .online, seq: 3, running: [TaskAttempt(taskId: "t", attempt: 1)])
        #expect(try WireCoding.decode(PropletHeartbeat.self, from: WireCoding.encode(hb)) == hb)
    }

    @Test func upstreamStyleLastWillDecodes() throws {
        let will = try WireCoding.decode(PropletHeartbeat.self, from: Array(#"{"proplet_id":"p9","status":"offline","seq":0}"#.utf8))
        #expect(will.status == .offline && will.propletId == "p9" && will.announcement == nil)
    }

    @Test(arguments: [
        (#"{"task_id":"t","attempt":"one"}"#, "attempt: expected a whole number"),
        (#"{"attempt":1}"#, "task_id: required field missing"),
        ("not json", "not valid JSON"),
    ])
    func malformedMessagesSayWhichField(json: String, message: String) throws {
        do {
            _ = try WireCoding.decode(StopTask.self, from: Array(json.utf8))
            Issue.record("decoded \(json)")
        } catch let error as PropellerError {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains(message), "\(error.message)")
        }
    }

    @Test func topicsNameTheSendingProplet() {
        let t = Topics(domain: "d1", channel: "c1")
        #expect(t.report(.create, from: "p1") == "m/d1/c/c1/control/manager/p1/create")
        #expect(t.allReports(.alive) == "m/d1/c/c1/control/manager/+/alive")
        #expect(t.allReports(.logs) == "m/d1/c/c1/control/manager/+/logs/+")
        #expect(t.start("p1") == "m/d1/c/c1/control/proplet/p1/start")
        #expect(t.logs(from: "p1", task: "abc") == "m/d1/c/c1/control/manager/p1/logs/abc")
        #expect(t.parseReport("m/d1/c/c1/control/manager/p1/logs/abc")! == ("p1", .logs, "abc"))
        #expect(t.parseReport("m/d1/c/c1/control/manager/p1/results")! == ("p1", .results, nil))
        for bad in ["m/d1/c/c1/control/manager/p1/logs", "m/d1/c/c1/control/manager/p1/results/x", "m/d2/c/c1/control/manager/p1/alive",
                    "m/d1/c/c1/control/manager/p1/unknown", "m/d1/c/c1/control/proplet/p1/start", "m/d1/c/c1/control/manager//alive"] {
            #expect(t.parseReport(bad) == nil, "\(bad)")
        }
        #expect(t.propletID(inRequestTopic: t.registryRequests(from: "p9")) == "p9")
        #expect(t.propletID(inRequestTopic: "m/d1/c/c1/registry/requests/a/b") == nil)
        #expect(Topics.isValidComponent("p-1"))
        for bad in ["", "a/b", "a+", "#", "a b", "a\nb", String(repeating: "x", count: 200)] { #expect(!Topics.isValidComponent(bad)) }
    }

    @Test func resourceArithmeticSaturates() {
        let a = Resources(cpuMillis: 100, memoryBytes: 10, pids: 1)
        let b = Resources(cpuMillis: 300, memoryBytes: 5, pids: 1)
        #expect(a - b == Resources(cpuMillis: 0, memoryBytes: 5, pids: 0))
        #expect(a + b == Resources(cpuMillis: 400, memoryBytes: 15, pids: 2))
        #expect(Resources(cpuMillis: 1000, memoryBytes: 100, pids: 5).holds(a))
        #expect(!a.holds(b))
    }
}
