-- The LLM gateway: fallback chains, a record of every attempt, circuit breakers shared by every
-- process on the database, and a response cache. PostgreSQL version:
-- times the breaker and the cache compute with are unix seconds in REAL columns (DOUBLE PRECISION),
-- the others ISO 8601 text like the rest of the schema.

-- A configuration's fallbacks, in order. Both ends belong to the same tenant (the composite foreign
-- keys make another tenant's id impossible); a configuration another one falls back to cannot be
-- deleted while it is listed.
CREATE TABLE llm_fallbacks (
    tenant_id   TEXT NOT NULL,
    llm_id      TEXT NOT NULL,
    position    INTEGER NOT NULL,          -- 0 for the first fallback
    fallback_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, llm_id, position),
    UNIQUE (tenant_id, llm_id, fallback_id),
    FOREIGN KEY (tenant_id, llm_id) REFERENCES llms (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, fallback_id) REFERENCES llms (tenant_id, id)
);

CREATE INDEX llm_fallbacks_by_target ON llm_fallbacks (tenant_id, fallback_id);

-- One row per attempt of an LLM call, written as the run goes (a crashed run still shows what it
-- spent): what usage and cost reports price.
CREATE TABLE llm_attempts (
    tenant_id     TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    seq           INTEGER NOT NULL,        -- the attempt's place in its run, from 1
    call_index    INTEGER NOT NULL,        -- the LLM call of the run it belongs to, from 1
    llm_id        TEXT NOT NULL,
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    base_url      TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('ok', 'retried', 'fell_back', 'failed', 'cache_hit', 'skipped')),
    error_type    TEXT,                    -- e.g. RateLimitError, APITimeoutError, CircuitOpen
    status_code   INTEGER,                 -- the HTTP status of a failed attempt, when there was one
    error         TEXT,                    -- a short account of the failure (no key)
    latency_ms    INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,  -- input tokens the provider served from its prompt cache
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, run_id, seq),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX llm_attempts_by_tenant_time ON llm_attempts (tenant_id, started_at);

-- The circuit breaker of each configuration. Read and changed only inside one transaction each
-- (under the tenant's row lock in PostgreSQL), so that every process sees one state.
CREATE TABLE llm_breakers (
    tenant_id    TEXT NOT NULL,
    llm_id       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    failures     INTEGER NOT NULL DEFAULT 0,   -- failures counted in the current window
    window_start DOUBLE PRECISION,                       -- unix time of the window's first failure
    open_until   DOUBLE PRECISION,                       -- unix time the cooldown ends (state 'open')
    trial_until  DOUBLE PRECISION,                       -- unix time the half-open trial call's lease ends
    last_error   TEXT,                         -- the failure that opened it, e.g. '503 InternalServerError'
    updated_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, llm_id),
    FOREIGN KEY (tenant_id, llm_id) REFERENCES llms (tenant_id, id) ON DELETE CASCADE
);

-- Cached responses of deterministic calls (opt-in per configuration: cache_ttl). The key hashes the
-- tenant with everything the request sends; every lookup is by tenant too.
CREATE TABLE llm_cache (
    tenant_id  TEXT NOT NULL,
    cache_key  TEXT NOT NULL,              -- sha256 hex
    llm_id     TEXT NOT NULL,
    response   TEXT NOT NULL,              -- JSON: role, content, tool_calls, usage of the original call
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, cache_key),
    FOREIGN KEY (tenant_id, llm_id) REFERENCES llms (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX llm_cache_by_age ON llm_cache (tenant_id, created_at);
