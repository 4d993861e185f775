import PostgresNIO

/// The store's tables on PostgreSQL, as numbered migrations: each runs once, in order, in one
/// transaction with the others that are missing, under an advisory lock so that managers
/// starting together migrate once. The tables mirror the SQLite store's (same columns, same JSON
/// bodies), with PostgreSQL's types.
enum PostgresSchema {
    static let migrations: [(version: String, statements: [String])] = [
        ("v1", [
            """
            CREATE TABLE tasks (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                state TEXT NOT NULL,
                reason TEXT,
                phase TEXT,
                attempt BIGINT NOT NULL,
                assigned_proplet TEXT,
                stop_requested BOOLEAN NOT NULL DEFAULT false,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                result TEXT
            )
            """,
            "CREATE INDEX tasks_state ON tasks(state, seq)",
            """
            CREATE TABLE task_transitions (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
                state TEXT NOT NULL,
                attempt BIGINT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                reason TEXT
            )
            """,
            "CREATE INDEX task_transitions_task ON task_transitions(task_id, seq)",
            """
            CREATE TABLE task_logs (
                task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
                stream TEXT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (task_id, stream)
            )
            """,
            "CREATE TABLE proplets (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
            """
            CREATE TABLE api_tokens (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL UNIQUE,
                created_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION
            )
            """,
            """
            CREATE TABLE actors (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL,
                state TEXT
            )
            """,
            """
            CREATE TABLE actor_executions (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                status TEXT NOT NULL,
                runtime DOUBLE PRECISION,
                cpu_usec BIGINT,
                memory_peak BIGINT,
                body TEXT NOT NULL,
                stdout BYTEA,
                stderr BYTEA,
                results BYTEA
            )
            """,
            "CREATE INDEX actor_executions_actor ON actor_executions(actor_id, seq)",
            """
            CREATE TABLE actor_inbox (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                execution_id TEXT NOT NULL UNIQUE REFERENCES actor_executions(id) ON DELETE CASCADE,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                content_type TEXT NOT NULL,
                body BYTEA NOT NULL
            )
            """,
            """
            CREATE TABLE actor_workers (
                id TEXT PRIMARY KEY,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                body TEXT NOT NULL
            )
            """,
        ]),
        // The leadership lease: one row, its epoch raised by every new leader (PostgresLease).
        ("v2-leadership", [
            """
            CREATE TABLE leadership (
                id INT PRIMARY KEY CHECK (id = 1),
                epoch BIGINT NOT NULL,
                holder TEXT NOT NULL,
                address TEXT NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL
            )
            """,
            """
            CREATE TABLE managers (
                id TEXT PRIMARY KEY,
                address TEXT NOT NULL,
                seen_at TIMESTAMPTZ NOT NULL
            )
            """,
        ]),
        // Secrets, sealed by the manager (SecretBox): the database never sees a value.
        ("v3-secrets", [
            """
            CREATE TABLE secrets (
                name TEXT PRIMARY KEY,
                sealed BYTEA NOT NULL,
                size_bytes BIGINT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
        ]),
        // Roles, identities and expiry on tokens (older tokens are admins, as they could do
        // everything), and the append-only audit log.
        ("v4-access", [
            "ALTER TABLE api_tokens ADD COLUMN identity TEXT",
            "ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE api_tokens ADD COLUMN expires_at DOUBLE PRECISION",
            "ALTER TABLE api_tokens ADD COLUMN rotated_at DOUBLE PRECISION",
            "ALTER TABLE api_tokens ADD COLUMN namespace TEXT",
            "CREATE TABLE namespaces (name TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, quota TEXT)",
            """
            CREATE TABLE actor_nonces (
                id TEXT PRIMARY KEY,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                sha256 TEXT NOT NULL UNIQUE,
                level TEXT NOT NULL,
                max_uses BIGINT,
                uses BIGINT NOT NULL DEFAULT 0,
                expires_at DOUBLE PRECISION,
                created_by TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX actor_nonces_actor ON actor_nonces(actor_id)",
            """
            CREATE TABLE actor_grants (
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                identity TEXT NOT NULL,
                level TEXT NOT NULL,
                granted_by TEXT NOT NULL,
                granted_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (actor_id, identity)
            )
            """,
            """
            CREATE TABLE audit_log (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                at DOUBLE PRECISION NOT NULL,
                identity TEXT NOT NULL,
                token_id TEXT NOT NULL,
                role TEXT NOT NULL,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                route TEXT NOT NULL,
                status INT NOT NULL,
                peer TEXT NOT NULL
            )
            """,
            """
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$
            """,
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
        ]),
        // Proplet identities made through the API (their secrets live on the broker only).
        ("v5-proplet-identities", [
            """
            CREATE TABLE proplet_identities (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION,
                revoked_by TEXT
            )
            """,
        ]),
        // A namespace's list (`task list -n team-a`) and its count read this index, not every task's spec.
        ("v6-task-namespace-index", [
            "CREATE INDEX tasks_namespace ON tasks ((COALESCE(spec::jsonb->>'namespace', 'default')), seq)",
        ]),
        // Retention: an audit entry may be deleted once a recorded prune (itself append-only) covers it.
        ("v7-audit-retention", [
            "CREATE TABLE audit_prunes (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, before DOUBLE PRECISION NOT NULL, at DOUBLE PRECISION NOT NULL)",
            "CREATE TRIGGER audit_prunes_append_only BEFORE UPDATE OR DELETE ON audit_prunes FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
            """
            CREATE FUNCTION audit_log_retention() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_OP = 'DELETE' AND OLD.at < COALESCE((SELECT MAX(before) FROM audit_prunes), 0) THEN RETURN OLD; END IF;
              RAISE EXCEPTION 'the audit log is append-only (only entries older than a recorded prune may go)';
            END $$
            """,
            "DROP TRIGGER audit_log_append_only ON audit_log",
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_retention()",
        ]),
        // A proplet identity held to some namespaces (JSON list; NULL: any).
        ("v8-proplet-identity-namespaces", [
            "ALTER TABLE proplet_identities ADD COLUMN namespaces TEXT",
        ]),
    ]

    /// Brings the database's schema up to date; returns the versions it applied.
    @discardableResult
    static func migrate(_ connections: PostgresConnections) throws -> [String] {
        try connections.transaction { session in
            // Serialises managers that start together; released at COMMIT.
            try session.run("SELECT pg_advisory_xact_lock(7428917001)")
            try session.run("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            var applied = Set<String>()
            for row in try session.run("SELECT version FROM schema_migrations") {
                applied.insert(try row.decode(String.self))
            }
            var done: [String] = []
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements { try session.run(PostgresQuery(unsafeSQL: statement)) }
                try session.run("INSERT INTO schema_migrations (version) VALUES (\(migration.version))")
                done.append(migration.version)
            }
            return done
        }
    }
}
