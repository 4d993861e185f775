/// The OpenAPI 3.0 description of the REST API, served at /openapi.json. A test checks that
/// every path and method here is routed and every route is described.
enum OpenAPIDocument {
    static let json = #"""
    {
      "openapi": "3.0.3",
      "info": {"title": "Propeller manager API", "version": "0.1.0",
               "description": "Tasks, proplets and actors of a Propeller cluster. Every route but /health and /openapi.json needs 'Authorization: Bearer TOKEN'; the token's role must hold the route's permission (SECURITY.md has the table), else 403 names the permission that is missing."},
      "servers": [{"url": "http://127.0.0.1:7070"}],
      "security": [{"bearer": []}],
      "paths": {
        "/health": {"get": {"summary": "Liveness of this manager, its role among managers that share a store, the leader it knows and the epoch", "security": [],
          "responses": {"200": {"description": "Up", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "status": {"type": "string"}, "role": {"type": "string", "enum": ["leader", "follower"]}, "id": {"type": "string"}, "address": {"type": "string"},
            "epoch": {"type": "integer"}, "leader": {"$ref": "#/components/schemas/Leader"}}}}}}}}},
        "/managers": {"get": {"summary": "The managers that share the store, with their roles (one manager alone: itself, leading)",
          "responses": {"200": {"description": "Members", "content": {"application/json": {"schema": {"type": "object", "required": ["members"], "properties": {
            "leader": {"$ref": "#/components/schemas/Leader"},
            "members": {"type": "array", "items": {"type": "object", "required": ["id", "address", "role"], "properties": {
              "id": {"type": "string"}, "address": {"type": "string"}, "role": {"type": "string", "enum": ["leader", "follower"]}, "seen_ago": {"type": "number"}}}}}}}}},
            "401": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
          "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"$ref": "#/components/responses/Error"}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [],
          "responses": {"200": {"description": "OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/tasks": {
          "post": {"summary": "Create a task (and start it with \"start\": true)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskCreate"}}}},
            "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
                          "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}},
          "get": {"summary": "List tasks, oldest first",
            "parameters": [{"$ref": "#/components/parameters/offset"}, {"$ref": "#/components/parameters/limit"},
                           {"name": "state", "in": "query", "schema": {"$ref": "#/components/schemas/TaskState"}}],
            "responses": {"200": {"description": "A page of tasks", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskPage"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "get": {"summary": "A task with its history",
            "responses": {"200": {"description": "The task", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskDetail"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}},
          "put": {"summary": "Change a task that is created or finished (fields as in create, all optional)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskUpdate"}}}},
            "responses": {"200": {"description": "Updated", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}},
          "delete": {"summary": "Delete a task that is not active",
            "responses": {"204": {"description": "Deleted"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/start": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "post": {"summary": "Queue a created or finished task for a (new) run",
            "responses": {"200": {"description": "Queued or placed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/stop": {
          "parameters": [{"$ref": "#/components/parameters/id"},
                         {"name": "signal", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 64}},
                         {"name": "grace", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 3600}}],
          "post": {"summary": "Stop a task: at once when queued, through its proplet when placed (SIGTERM, then SIGKILL after the grace period)",
            "responses": {"202": {"description": "Stopping", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/results": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "get": {"summary": "How the last attempt ended",
            "responses": {"200": {"description": "The result", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskResult"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/logs": {
          "parameters": [{"$ref": "#/components/parameters/id"},
                         {"name": "follow", "in": "query", "schema": {"type": "boolean"}, "description": "Stream log blocks (NDJSON) until the task ends"}],
          "get": {"summary": "The kept tail of the task's stdout and stderr",
            "responses": {"200": {"description": "Logs", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskLogs"}},
                                                                      "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/LogBlock"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/watch": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "get": {"summary": "The task as it changes, one JSON object per line, until it ends",
            "responses": {"200": {"description": "NDJSON stream of tasks", "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
        "/proplets": {
          "get": {"summary": "Proplets, alive and dead, with capacity and reservations",
            "parameters": [{"$ref": "#/components/parameters/offset"}, {"$ref": "#/components/parameters/limit"}],
            "responses": {"200": {"description": "A page of proplets", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PropletPage"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}}}},
        "/proplets/{id}": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "get": {"summary": "One proplet",
            "responses": {"200": {"description": "The proplet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Proplet"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}},
          "delete": {"summary": "Forget a dead proplet",
            "responses": {"204": {"description": "Deleted"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}}}},
    \#(actorPaths)
    \#(sessionPaths)
        "/tokens": {
          "get": {"summary": "API tokens (never their secrets)",
            "responses": {"200": {"description": "Tokens", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenList"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}},
          "post": {"summary": "Make an API token; its secret is in this answer only",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false,
              "required": ["name", "role"],
              "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100}, "role": {"$ref": "#/components/schemas/Role"},
                "identity": {"type": "string", "minLength": 1, "maxLength": 100, "description": "the user or service it belongs to (default: its name)"},
                "expires_in_seconds": {"type": "number", "minimum": 1, "maximum": 315360000}}}}}},
            "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreatedToken"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
                          "404": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}},
        "/tokens/{id}": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "delete": {"summary": "Revoke an API token (it stops working at once); not the one making the request",
            "responses": {"200": {"description": "The revoked token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Token"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
        "/tokens/{id}/rotate": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "post": {"summary": "Give a token a new secret (in this answer only); the old one stops working at once. A token may rotate itself; others take tokens:manage",
            "responses": {"200": {"description": "The token and its new secret", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreatedToken"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
                          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
        "/whoami": {
          "get": {"summary": "The token making the request: its identity, role and permissions",
            "responses": {"200": {"description": "Who", "content": {"application/json": {"schema": {"type": "object", "required": ["token_id", "identity", "role", "permissions"],
              "properties": {"token_id": {"type": "string"}, "identity": {"type": "string"}, "role": {"$ref": "#/components/schemas/Role"},
                "permissions": {"type": "array", "items": {"type": "string"}}, "expires_at": {"type": "number"}}}}}},
                          "401": {"$ref": "#/components/responses/Error"}}}},
        "/audit": {
          "get": {"summary": "The audit log, oldest first: every write, every read of secrets and every 403, with who, when and from where",
            "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "entries after this number"},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": {"description": "A page", "content": {"application/json": {"schema": {"type": "object", "required": ["entries", "next"],
              "properties": {"next": {"type": "integer"}, "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
                          "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/outputs": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "get": {"summary": "The files of an ended task's output directory, kept on its proplet",
            "responses": {"200": {"description": "Files", "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "files": {"type": "array", "items": {"$ref": "#/components/schemas/OutputFile"}}}}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/outputs/{path}": {
          "parameters": [{"$ref": "#/components/parameters/id"}, {"name": "path", "in": "path", "required": true, "schema": {"type": "string"},
                          "description": "relative to the output directory; may hold /"}],
          "get": {"summary": "One file of an ended task's outputs, byte for byte",
            "responses": {"200": {"description": "The file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"},
                          "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
        "/volumes": {
          "get": {"summary": "Named volumes of every proplet (or of ?proplet=ID), as their heartbeats last said",
            "parameters": [{"name": "proplet", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "Volumes", "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "volumes": {"type": "array", "items": {"$ref": "#/components/schemas/NamedVolume"}}}}}}},
                          "401": {"$ref": "#/components/responses/Error"}}}},
        "/tasks/{id}/stats": {
          "parameters": [{"$ref": "#/components/parameters/id"},
                         {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["true"]}, "description": "the samples so far, then each new one (NDJSON) until the task ends"}],
          "get": {"summary": "A task's recent usage (CPU, memory, processes, I/O) as its proplet samples it; kept in the leader's memory for ten minutes after the task",
            "responses": {"200": {"description": "Samples, oldest first", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Usage"}},
                            "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/UsageSample"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
        "/proplets/{id}/stats": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "get": {"summary": "The sum of a proplet's tasks' recent usage",
            "responses": {"200": {"description": "Samples, oldest first", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Usage"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
        "/proplets/{id}/eligibility": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "put": {"summary": "Open (true) or close (false) a proplet to new work; what runs there goes on",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["eligible"],
              "properties": {"eligible": {"type": "boolean"}}}}}},
            "responses": {"200": {"description": "The proplet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Proplet"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
                          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
        "/proplets/{id}/drain": {
          "parameters": [{"$ref": "#/components/parameters/id"}],
          "post": {"summary": "Drain a proplet: nothing new goes there, its actor workers move, and at the deadline what still runs is stopped and goes where its restart policy sends it; again: a new deadline",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false,
              "properties": {"deadline_seconds": {"type": "number", "minimum": 0, "description": "from now; absent: no deadline (everything finishes there)"}}}}}},
            "responses": {"200": {"description": "The proplet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Proplet"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
                          "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}},
          "delete": {"summary": "End a drain: the proplet is eligible again",
            "responses": {"200": {"description": "The proplet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Proplet"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
        "/proplets/{id}/volumes/{name}": {
          "parameters": [{"$ref": "#/components/parameters/id"}, {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
          "delete": {"summary": "Ask the proplet to remove a named volume nothing uses",
            "responses": {"202": {"description": "Asked; its heartbeats show the outcome"}, "401": {"$ref": "#/components/responses/Error"},
                          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
        "/secrets": {
          "get": {"summary": "Secrets: names, sizes and times, never values",
            "responses": {"200": {"description": "Secrets", "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "secrets": {"type": "array", "items": {"$ref": "#/components/schemas/Secret"}}}}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}},
          "post": {"summary": "Store a secret, sealed; its value never comes back out",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["name", "value"],
              "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                "value": {"type": "string", "format": "byte", "description": "base64 of 1 byte to 64 KiB"}}}}}},
            "responses": {"201": {"description": "Stored", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Secret"}}}},
                          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"},
                          "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
        "/secrets/{name}": {
          "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
          "get": {"summary": "A secret's name, size and time",
            "responses": {"200": {"description": "The secret", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Secret"}}}},
                          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}},
          "delete": {"summary": "Remove a secret (tasks that ask for it later fail to start)",
            "responses": {"204": {"description": "Removed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
                          "503": {"$ref": "#/components/responses/Error"}}}}
      },
      "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "parameters": {
          "id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
          "eid": {"name": "eid", "in": "path", "required": true, "schema": {"type": "string"}},
          "sid": {"name": "sid", "in": "path", "required": true, "schema": {"type": "string"}},
          "offset": {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
          "limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000}}
        },
        "responses": {
          "Error": {"description": "What went wrong", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        },
        "schemas": {
          "Leader": {"type": "object", "required": ["id", "address", "epoch", "expires_in"], "properties": {
            "id": {"type": "string"}, "address": {"type": "string"}, "epoch": {"type": "integer"},
            "expires_in": {"type": "number", "description": "Seconds until the lease expires unless renewed"}}},
          "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    \#(actorSchemas)
    \#(sessionSchemas)
          "TaskState": {"type": "string", "enum": ["created", "pending", "scheduled", "running", "completed", "failed", "stopped", "unknown"]},
          "Resources": {"type": "object", "additionalProperties": false, "properties": {
            "cpu_millis": {"type": "integer", "minimum": 0, "maximum": 1073741824, "description": "Thousandths of a CPU"},
            "memory_bytes": {"type": "integer", "minimum": 0, "maximum": 1125899906842624, "description": "0 or at least 6291456; default the manager's --default-memory"},
            "pids": {"type": "integer", "minimum": 0, "maximum": 4194304}}},
          "RestartPolicy": {"type": "object", "additionalProperties": false, "properties": {
            "mode": {"type": "string", "enum": ["never", "on-failure"]},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100}}},
          "StringMap": {"type": "object", "additionalProperties": {"type": "string"}},
          "TaskUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "image": {"type": "string", "minLength": 1, "description": "host[:port]/repo[:tag][@sha256:...]"},
            "command": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "env": {"$ref": "#/components/schemas/StringMap"},
            "workdir": {"type": "string", "pattern": "^/"},
            "user": {"type": "string"},
            "resources": {"$ref": "#/components/schemas/Resources"},
            "timeout_seconds": {"type": "number", "minimum": 0.001, "maximum": 31622400},
            "labels": {"$ref": "#/components/schemas/StringMap"},
            "constraints": {"$ref": "#/components/schemas/StringMap"},
            "proplet_id": {"type": "string"},
            "restart_policy": {"$ref": "#/components/schemas/RestartPolicy"},
            "network": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", "description": "none (the default), host, bridge, or a network a proplet offers"},
            "publish": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/PortMapping"}},
            "artifacts": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/Artifact"}},
            "output": {"type": "string", "pattern": "^/", "description": "a directory kept on the proplet after the task ends"},
            "volumes": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/Volume"}},
            "tmpfs": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/Tmpfs"}},
            "secrets": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/SecretMount"}}}},
          "Secret": {"type": "object", "required": ["name", "size_bytes", "created_at"], "properties": {
            "name": {"type": "string"}, "size_bytes": {"type": "integer"}, "created_at": {"type": "number"}}},
          "SecretMount": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            "target": {"type": "string", "pattern": "^/", "description": "a file; /run/secrets/NAME by default"}}},
          "Artifact": {"type": "object", "additionalProperties": false, "required": ["url"], "properties": {
            "url": {"type": "string", "description": "https://, or http:// on the loopback"},
            "destination": {"type": "string", "pattern": "^/", "description": "where it is mounted (/local/NAME by default); an archive is unpacked there"},
            "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}},
          "PortMapping": {"type": "object", "additionalProperties": false, "required": ["container_port"], "properties": {
            "host_port": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "0 or absent: the manager picks a free one"},
            "container_port": {"type": "integer", "minimum": 1, "maximum": 65535}, "proto": {"type": "string", "enum": ["tcp", "udp"]}}},
          "Volume": {"type": "object", "additionalProperties": false, "required": ["name", "target"],
            "description": "A host volume offered by the proplet under this name, else a named volume kept on the proplet",
            "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
              "target": {"type": "string", "pattern": "^/", "description": "absolute, not on or below /proc, /sys or /dev"},
              "read_only": {"type": "boolean"},
              "size_bytes": {"type": "integer", "minimum": 16777216, "maximum": 17592186044416, "description": "a named volume's size limit, set when it is made"}}},
          "Tmpfs": {"type": "object", "additionalProperties": false, "required": ["target"], "properties": {
            "target": {"type": "string", "pattern": "^/"}, "size_bytes": {"type": "integer", "minimum": 4096}}},
          "OutputFile": {"type": "object", "properties": {"path": {"type": "string"}, "size_bytes": {"type": "integer"}}},
          "NamedVolume": {"type": "object", "properties": {"proplet": {"type": "string"}, "name": {"type": "string"},
            "size_bytes": {"type": "integer"}, "in_use": {"type": "integer"}}},
          "HostVolume": {"type": "object", "properties": {"name": {"type": "string"}, "read_only": {"type": "boolean"}}},
          "TaskCreate": {"allOf": [{"$ref": "#/components/schemas/TaskUpdate"},
            {"type": "object", "required": ["name", "image"], "properties": {"start": {"type": "boolean"}}}]},
          "TaskUsage": {"type": "object", "properties": {"cpu_usec": {"type": "integer"}, "memory_peak_bytes": {"type": "integer"}}},
          "TaskResult": {"type": "object", "required": ["task_id", "attempt", "proplet_id", "state"], "properties": {
            "task_id": {"type": "string"}, "attempt": {"type": "integer"}, "proplet_id": {"type": "string"},
            "state": {"$ref": "#/components/schemas/TaskState"}, "exit_code": {"type": "integer"}, "signal": {"type": "integer"},
            "oom_killed": {"type": "boolean"}, "timed_out": {"type": "boolean"}, "error": {"type": "string"},
            "started_at": {"type": "number"}, "finished_at": {"type": "number"}, "usage": {"$ref": "#/components/schemas/TaskUsage"},
            "stdout_tail": {"type": "string"}, "stderr_tail": {"type": "string"},
            "outputs": {"type": "object", "properties": {"files": {"type": "integer"}, "bytes": {"type": "integer"}, "kept": {"type": "boolean"}, "reason": {"type": "string"}}}}},
          "Task": {"type": "object", "required": ["id", "name", "image", "state", "attempt", "created_at", "updated_at"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "image": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}}, "env": {"$ref": "#/components/schemas/StringMap"},
            "workdir": {"type": "string"}, "user": {"type": "string"}, "resources": {"$ref": "#/components/schemas/Resources"},
            "timeout_seconds": {"type": "number"}, "labels": {"$ref": "#/components/schemas/StringMap"},
            "constraints": {"$ref": "#/components/schemas/StringMap"}, "proplet_id": {"type": "string"},
            "restart_policy": {"$ref": "#/components/schemas/RestartPolicy"}, "network": {"type": "string"},
            "volumes": {"type": "array", "items": {"$ref": "#/components/schemas/Volume"}},
            "tmpfs": {"type": "array", "items": {"$ref": "#/components/schemas/Tmpfs"}},
            "secrets": {"type": "array", "items": {"$ref": "#/components/schemas/SecretMount"}},
            "publish": {"type": "array", "items": {"$ref": "#/components/schemas/PortMapping"}},
            "artifacts": {"type": "array", "items": {"$ref": "#/components/schemas/Artifact"}},
            "output": {"type": "string"},
            "trace": {"type": "object", "additionalProperties": {"type": "string"}, "description": "the W3C trace context (traceparent) of the request that created the task, when the manager exports traces"},
            "ports": {"type": "array", "items": {"$ref": "#/components/schemas/PortMapping"}, "description": "the published ports of the current attempt, with their host ports"},
            "pull": {"type": "object", "properties": {"received_bytes": {"type": "integer"}, "total_bytes": {"type": "integer"}}, "description": "while its image is pulled: how far, as its proplet last said"},
            "state": {"$ref": "#/components/schemas/TaskState"}, "reason": {"type": "string"}, "phase": {"type": "string"},
            "attempt": {"type": "integer"}, "assigned_proplet": {"type": "string"}, "stop_requested": {"type": "boolean"},
            "created_at": {"type": "number"}, "updated_at": {"type": "number"}, "started_at": {"type": "number"},
            "finished_at": {"type": "number"}, "result": {"$ref": "#/components/schemas/TaskResult"}}},
          "Transition": {"type": "object", "properties": {"task_id": {"type": "string"}, "state": {"$ref": "#/components/schemas/TaskState"},
            "attempt": {"type": "integer"}, "at": {"type": "number"}, "reason": {"type": "string"}}},
          "TaskDetail": {"allOf": [{"$ref": "#/components/schemas/Task"},
            {"type": "object", "properties": {"history": {"type": "array", "items": {"$ref": "#/components/schemas/Transition"}}}}]},
          "TaskPage": {"type": "object", "required": ["offset", "limit", "total", "tasks"], "properties": {
            "offset": {"type": "integer"}, "limit": {"type": "integer"}, "total": {"type": "integer"},
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}}},
          "TaskLogs": {"type": "object", "properties": {"stdout": {"type": "string"}, "stderr": {"type": "string"}}},
          "LogBlock": {"type": "object", "properties": {"task_id": {"type": "string"}, "attempt": {"type": "integer"},
            "stream": {"type": "string", "enum": ["stdout", "stderr"]}, "offset": {"type": "integer"}, "data": {"type": "string"}}},
          "Capacity": {"type": "object", "properties": {"cpu_millis": {"type": "integer"}, "memory_bytes": {"type": "integer"},
            "pids": {"type": "integer"}, "tasks": {"type": "integer"}}},
          "Proplet": {"type": "object", "required": ["id", "alive"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"}, "labels": {"$ref": "#/components/schemas/StringMap"},
            "capacity": {"$ref": "#/components/schemas/Capacity"}, "allocated": {"$ref": "#/components/schemas/Resources"},
            "task_count": {"type": "integer"}, "os": {"type": "string"}, "arch": {"type": "string"}, "cgroup_mode": {"type": "string"},
            "alive": {"type": "boolean"}, "state": {"type": "string", "enum": ["alive", "disconnected", "lost"]}, "last_seen": {"type": "number"}, "registered_at": {"type": "number"}, "reason": {"type": "string"}, "draining": {"type": "boolean", "description": "shutting down (its own heartbeats say so)"}, "epoch": {"type": "integer"},
            "eligible": {"type": "boolean", "description": "false: closed to new work by an operator or a drain; absent: eligible"},
            "drain": {"type": "object", "description": "an operator's drain in progress", "properties": {"started_at": {"type": "number"}, "deadline": {"type": "number"}}},
            "host_volumes": {"type": "array", "items": {"$ref": "#/components/schemas/HostVolume"}},
            "networks": {"type": "array", "items": {"type": "string"}}}},
          "Role": {"type": "string", "enum": ["admin", "operator", "developer", "viewer", "invoker"]},
          "Token": {"type": "object", "required": ["id", "name", "identity", "role", "created_at"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "identity": {"type": "string"}, "role": {"$ref": "#/components/schemas/Role"},
            "created_at": {"type": "number"}, "expires_at": {"type": "number"}, "rotated_at": {"type": "number"}, "revoked_at": {"type": "number"}}},
          "AuditEntry": {"type": "object", "required": ["seq", "at", "identity", "token_id", "role", "method", "path", "route", "status", "peer"], "properties": {
            "seq": {"type": "integer"}, "at": {"type": "number"}, "identity": {"type": "string"}, "token_id": {"type": "string"}, "role": {"type": "string"},
            "method": {"type": "string"}, "path": {"type": "string"}, "route": {"type": "string", "description": "the access rule it matched"},
            "status": {"type": "integer"}, "peer": {"type": "string", "description": "the caller's IP address"}}},
          "CreatedToken": {"allOf": [{"$ref": "#/components/schemas/Token"},
            {"type": "object", "required": ["token"], "properties": {"token": {"type": "string", "description": "The secret: shown once, stored only as its SHA-256"}}}]},
          "TokenList": {"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}}},
          "UsageSample": {"type": "object", "required": ["at"], "properties": {
            "at": {"type": "number"}, "cpu_cores": {"type": "number", "description": "CPUs used since the sample before"},
            "cpu_usage_micros": {"type": "integer"}, "memory_bytes": {"type": "integer"}, "pids": {"type": "integer"},
            "io_read_bytes": {"type": "integer"}, "io_write_bytes": {"type": "integer"}}},
          "Usage": {"type": "object", "required": ["samples"], "properties": {
            "task_id": {"type": "string"}, "proplet_id": {"type": "string"}, "attempt": {"type": "integer"},
            "samples": {"type": "array", "items": {"$ref": "#/components/schemas/UsageSample"}}}},
          "PropletPage": {"type": "object", "required": ["offset", "limit", "total", "proplets"], "properties": {
            "offset": {"type": "integer"}, "limit": {"type": "integer"}, "total": {"type": "integer"},
            "proplets": {"type": "array", "items": {"$ref": "#/components/schemas/Proplet"}}}}
        }
      }
    }
    """#
}
