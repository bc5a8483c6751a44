-- Per-tenant options for code executors (e.g. the Docker sandbox's memory, cpus, network),
-- validated by the executor that uses them when they are set.

CREATE TABLE tenant_executor_options (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    options    TEXT NOT NULL,              -- JSON object
    updated_at TEXT NOT NULL
);
