/// The exec session routes and schemas of the OpenAPI document (`propeller task exec`).
extension OpenAPIDocument {
    static let sessionPaths = #"""
        "/tasks/{id}/exec": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "post": {"summary": "Start a process inside a running task (its namespaces, cgroup, user, capabilities and seccomp filter; never more)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecCreate"}}}},
            "responses": {"201": {"description": "The session (starting until the proplet reports the process)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecSession"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"},
                          "429": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/exec/{sid}": {
          "parameters": [{"$ref": "#/components/parameters/id"}, {"$ref": "#/components/parameters/sid"}],
          "get": {"summary": "An exec session: its state and, once it ended, the exit code",
            "responses": {"200": {"description": "The session", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecSession"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}},
          "delete": {"summary": "Kill the session's process (it ends when the proplet reports it)",
            "responses": {"202": {"description": "Sent"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/exec/{sid}/output": {
          "parameters": [{"$ref": "#/components/parameters/id"}, {"$ref": "#/components/parameters/sid"},
                         {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "the first frame to send (after a reconnect: the last one seen + 1)"}],
          "get": {"summary": "The session's frames in order (NDJSON), as they come, until its exit or error frame",
            "responses": {"200": {"description": "Frames", "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/ExecFrame"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/exec/{sid}/input": {
          "parameters": [{"$ref": "#/components/parameters/id"}, {"$ref": "#/components/parameters/sid"},
                         {"name": "eof", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}, "description": "close the process's stdin after these bytes (a terminal: ^D)"}],
          "post": {"summary": "Bytes for the process's stdin, in order of the requests",
            "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary", "maxLength": 1048576}}}},
            "responses": {"202": {"description": "Sent"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/exec/{sid}/resize": {
          "parameters": [{"$ref": "#/components/parameters/id"}, {"$ref": "#/components/parameters/sid"}],
          "post": {"summary": "The terminal's new size",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["rows", "cols"],
              "properties": {"rows": {"type": "integer", "minimum": 1, "maximum": 10000}, "cols": {"type": "integer", "minimum": 1, "maximum": 10000}}}}}},
            "responses": {"202": {"description": "Sent"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
                          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
                          "422": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/exec/{sid}/signal": {
          "parameters": [{"$ref": "#/components/parameters/id"}, {"$ref": "#/components/parameters/sid"}],
          "post": {"summary": "Send a signal to the session's process",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["signal"],
              "properties": {"signal": {"type": "integer", "minimum": 1, "maximum": 64}}}}}},
            "responses": {"202": {"description": "Sent"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
                          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
                          "422": {"$ref": "#/components/responses/Error"}}}},
    """#

    static let sessionSchemas = #"""
          "ExecCreate": {"type": "object", "additionalProperties": false, "required": ["command"], "properties": {
            "command": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "tty": {"type": "boolean", "description": "a terminal as stdin, stdout and stderr"},
            "stdin": {"type": "boolean", "description": "without a terminal: a stdin fed by /input (else /dev/null)"},
            "environment": {"type": "array", "items": {"type": "string", "pattern": "^[^=]+="}, "description": "KEY=VALUE after the task's own"},
            "working_directory": {"type": "string", "pattern": "^/"},
            "rows": {"type": "integer", "minimum": 1, "maximum": 10000}, "cols": {"type": "integer", "minimum": 1, "maximum": 10000}}},
          "ExecSession": {"type": "object", "required": ["session_id", "task_id", "attempt", "proplet_id", "command", "tty", "state", "created_at"], "properties": {
            "session_id": {"type": "string"}, "task_id": {"type": "string"}, "attempt": {"type": "integer"}, "proplet_id": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}}, "tty": {"type": "boolean"},
            "state": {"type": "string", "enum": ["starting", "running", "exited", "failed"]},
            "exit_code": {"type": "integer", "description": "128 + N: killed by signal N; 127: not found in the task"},
            "error": {"type": "string"}, "created_at": {"type": "number"}}},
          "ExecFrame": {"type": "object", "required": ["session_id", "proplet_id", "seq", "kind"], "properties": {
            "session_id": {"type": "string"}, "proplet_id": {"type": "string"}, "seq": {"type": "integer", "description": "from 0, without gaps"},
            "kind": {"type": "string", "enum": ["started", "output", "exit", "error"]},
            "stream": {"type": "string", "enum": ["stdout", "stderr"]}, "data": {"type": "string", "format": "byte", "description": "base64"},
            "exit_code": {"type": "integer"}, "error": {"type": "string"}}},
    """#
}
