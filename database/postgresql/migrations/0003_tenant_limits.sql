-- Per-tenant limits. A NULL column means "the installation's default" (mt_core/limits.py).

CREATE TABLE tenant_limits (
    tenant_id             TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    max_tools             INTEGER,
    max_llms              INTEGER,
    max_concurrent_runs   INTEGER,
    runs_per_minute       INTEGER,
    max_steps             INTEGER,
    max_query_length      INTEGER,
    max_tool_source_bytes INTEGER,
    updated_at            TEXT NOT NULL
);

CREATE INDEX runs_by_tenant_status ON runs (tenant_id, status);
