-- mt-core baseline schema for PostgreSQL (version 1). Later changes are numbered files in
-- migrations/, applied in order on open (by one process at a time: an advisory lock) and recorded
-- in schema_migrations. Version numbers mean the same change as in ../sqlite/, so that a database
-- copied from one dialect to the other (`mt db copy`) is at the same version.
-- Times are ISO 8601 text in UTC with microseconds, as in SQLite: they sort as text, and the API
-- returns them as they are stored. JSON columns are text too (written and read by mt-core only).
-- Every row that belongs to a tenant carries tenant_id, and every tenant-owned key starts with it.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);

CREATE TABLE tools (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('function', 'class')),
    source        TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    inputs        TEXT NOT NULL,           -- JSON object: input name -> {type, description, nullable?}
    output_type   TEXT NOT NULL,
    dependencies  TEXT NOT NULL,           -- JSON array of PEP 508 requirement strings
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE llms (
    tenant_id          TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id                 TEXT NOT NULL,
    name               TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model_name         TEXT NOT NULL,
    base_url           TEXT,
    options            TEXT NOT NULL,      -- JSON object of provider-specific fields
    api_key_ciphertext TEXT,               -- v1:<key id>:<base64>, bound to tenant and row
    api_key_masked     TEXT,
    created_at         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE runs (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    llm_id        TEXT NOT NULL,
    tool_ids      TEXT NOT NULL,           -- JSON array
    query         TEXT NOT NULL,
    agent_type    TEXT NOT NULL,
    executor      TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'max_steps', 'failed', 'timeout')),
    output        TEXT,
    error         TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    steps         INTEGER,
    duration_ms   INTEGER,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX runs_by_tenant_time ON runs (tenant_id, started_at);
