-- Usage, cost and budgets. SQLite version (money is REAL: US dollars as a double).
--
-- Applied with foreign keys off (mt_core/storage/sqlite.py), as SQLite's own procedure for
-- changing a table asks; every foreign key is checked again before the migration commits.

-- A run may end with status 'budget_exceeded': a CHECK constraint cannot be changed in place, so
-- runs is rebuilt (create the new table, copy, drop the old, rename) with its indexes.
CREATE TABLE runs_new (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id               TEXT NOT NULL,
    llm_id           TEXT NOT NULL,
    tool_ids         TEXT NOT NULL,        -- JSON array
    tool_versions    TEXT,                 -- JSON object: tool id -> version used
    query            TEXT NOT NULL,
    agent_type       TEXT NOT NULL,
    executor         TEXT,
    status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'max_steps', 'failed', 'timeout',
                                                     'budget_exceeded')),
    output           TEXT,
    error            TEXT,
    input_tokens     INTEGER,
    output_tokens    INTEGER,
    steps            INTEGER,
    duration_ms      INTEGER,
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    owner_host       TEXT,
    owner_boot_id    TEXT,
    owner_pid        INTEGER,
    owner_start_time TEXT,
    deadline         TEXT,
    PRIMARY KEY (tenant_id, id)
);

INSERT INTO runs_new (tenant_id, id, llm_id, tool_ids, tool_versions, query, agent_type, executor, status, output,
                      error, input_tokens, output_tokens, steps, duration_ms, started_at, finished_at, owner_host,
                      owner_boot_id, owner_pid, owner_start_time, deadline)
SELECT tenant_id, id, llm_id, tool_ids, tool_versions, query, agent_type, executor, status, output, error,
       input_tokens, output_tokens, steps, duration_ms, started_at, finished_at, owner_host, owner_boot_id, owner_pid,
       owner_start_time, deadline FROM runs;

DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_by_tenant_time ON runs (tenant_id, started_at);
CREATE INDEX runs_by_tenant_status ON runs (tenant_id, status);

-- Each LLM attempt's cost in US dollars and what priced it ('genai-prices 0.2.3: openai gpt-4o-mini',
-- 'configuration'). An attempt that billed no tokens (failed, skipped, a cache hit) costs 0; one that
-- billed tokens nobody has a price for has cost_usd NULL (unpriced: reports flag it, never 0).
ALTER TABLE llm_attempts ADD COLUMN cost_usd REAL;
ALTER TABLE llm_attempts ADD COLUMN priced_by TEXT;
UPDATE llm_attempts SET cost_usd = 0 WHERE input_tokens = 0 AND output_tokens = 0;

-- Prices of an LLM configuration that override genai-prices (self-hosted or private models):
-- JSON {"input_per_mtok": 0.15, "output_per_mtok": 0.6, "cached_input_per_mtok": 0.075}, or NULL.
ALTER TABLE llms ADD COLUMN prices TEXT;

-- Budgets (NULL: none). Days and months are UTC.
ALTER TABLE tenant_limits ADD COLUMN budget_usd_per_day REAL;
ALTER TABLE tenant_limits ADD COLUMN budget_usd_per_month REAL;
ALTER TABLE tenant_limits ADD COLUMN tokens_per_day INTEGER;

-- One row per tool call of a run, written as the sandbox reports it (after each step).
CREATE TABLE tool_calls (
    tenant_id    TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    seq          INTEGER NOT NULL,         -- the call's place in its run, from 1
    tool_id      TEXT NOT NULL,            -- tool_... or pkg:<name>
    tool_version TEXT,                     -- the tool's version number, or the package's version
    name         TEXT NOT NULL,            -- the tool's name in the agent
    outcome      TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    error        TEXT,                     -- the exception the tool raised (type: message), cut
    duration_ms  REAL NOT NULL,
    started_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, run_id, seq),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX tool_calls_by_tenant_time ON tool_calls (tenant_id, started_at);

-- What an LLM call about to be sent may cost, held while it is in flight so that every process
-- checking the tenant's budgets counts it (settled into llm_attempts when the attempt ends). A
-- reservation past expires_at no longer counts: the process that made it died.
CREATE TABLE llm_reservations (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    tokens     INTEGER NOT NULL,           -- estimated input and output tokens
    cost_usd   REAL NOT NULL,              -- their estimated cost (0 when unpriced)
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);
