import Foundation
import HTTPTypes
import Hummingbird
import PropellerCore

/// `/tasks/{id}/exec`: processes started inside running tasks (``TaskService+Sessions.swift``).
extension ManagerAPI {
    func addSessionRoutes(_ router: Router<APIContext>) {
        let service = self.service
        router.post("/tasks/{id}/exec") { request, context in
            let body = try TaskRequest.decode(ExecSessionRequest.self, try await collect(request, limit: 256 << 10),
                                              fields: ["command", "tty", "stdin", "environment", "working_directory", "rows", "cols"], nested: [:])
            return try encode(try await service.openSession(try context.parameters.require("id"), body), status: .created)
        }
        router.get("/tasks/{id}/exec/{sid}") { _, context in
            try encode(try await service.session(try context.parameters.require("id"), try context.parameters.require("sid")))
        }
        router.delete("/tasks/{id}/exec/{sid}") { _, context in
            try await service.closeSession(try context.parameters.require("id"), try context.parameters.require("sid"))
            return Response(status: .accepted)
        }
        router.get("/tasks/{id}/exec/{sid}/output") { request, context in
            var after = 0
            if let text = request.uri.queryParameters["after"] {
                guard let value = Int(text), value >= 0 else { throw APIError.unprocessable("after: a frame number, 0 or more (got \(text))") }
                after = value
            }
            let stream = try await service.followSession(try context.parameters.require("id"), try context.parameters.require("sid"), after: after)
            let encoder = WireCoding.encoder()
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
                for await frame in stream {
                    try await writer.write(ByteBuffer(bytes: try encoder.encode(frame) + [0x0a]))
                }
                try await writer.finish(nil)
            })
        }
        router.post("/tasks/{id}/exec/{sid}/input") { request, context in
            let eof = request.uri.queryParameters["eof"].map { $0 == "true" || $0 == "1" } ?? false
            let bytes = try await collect(request, limit: 1 << 20)
            try await service.sendInput(try context.parameters.require("id"), try context.parameters.require("sid"), bytes, eof: eof)
            return Response(status: .accepted)
        }
        router.post("/tasks/{id}/exec/{sid}/resize") { request, context in
            struct Body: Decodable { var rows: Int; var cols: Int }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["rows", "cols"], nested: [:])
            try await service.resizeSession(try context.parameters.require("id"), try context.parameters.require("sid"), rows: body.rows, cols: body.cols)
            return Response(status: .accepted)
        }
        router.post("/tasks/{id}/exec/{sid}/signal") { request, context in
            struct Body: Decodable { var signal: Int32 }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["signal"], nested: [:])
            try await service.signalSession(try context.parameters.require("id"), try context.parameters.require("sid"), signal: body.signal)
            return Response(status: .accepted)
        }
    }
}
