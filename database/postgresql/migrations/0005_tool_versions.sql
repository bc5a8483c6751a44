-- Tool versions, per-tenant tool settings and secrets, and the versions a run used.
--
-- A tool is an identity (tenant, id, name, latest version); its content lives in immutable rows
-- of tool_versions (one per add_tool/update_tool). Settings (JSON, passed to a class tool's
-- __init__) are part of a version; secrets are per tool (the current values only, encrypted like
-- LLM keys and bound to tenant, tool and name), so that a rotated key does not stay decryptable
-- in the history. Package tools get settings and secrets per tenant when enabled.

CREATE TABLE tool_versions (
    tenant_id     TEXT NOT NULL,
    tool_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    description   TEXT NOT NULL,
    kind          TEXT NOT NULL,           -- function, class or instance (e.g. a @tool function)
    entry         TEXT,                    -- the definition of the source that is the tool
    source        TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    inputs        TEXT NOT NULL,           -- JSON object, as smolagents Tool.inputs
    output_type   TEXT NOT NULL,
    output_schema TEXT,                    -- JSON, when the tool declares one
    dependencies  TEXT NOT NULL,           -- JSON array of PEP 508 requirement strings
    settings      TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, tool_id, version),
    FOREIGN KEY (tenant_id, tool_id) REFERENCES tools (tenant_id, id) ON DELETE CASCADE
);

INSERT INTO tool_versions (tenant_id, tool_id, version, description, kind, entry, source, source_sha256, inputs,
                           output_type, output_schema, dependencies, settings, created_at)
SELECT tenant_id, id, version, description, kind, NULL, source, source_sha256, inputs, output_type, NULL,
       dependencies, '{}', created_at FROM tools;

ALTER TABLE tools DROP COLUMN description;
ALTER TABLE tools DROP COLUMN kind;
ALTER TABLE tools DROP COLUMN source;
ALTER TABLE tools DROP COLUMN source_sha256;
ALTER TABLE tools DROP COLUMN inputs;
ALTER TABLE tools DROP COLUMN output_type;
ALTER TABLE tools DROP COLUMN dependencies;

CREATE TABLE tool_secrets (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    tool_id    TEXT NOT NULL,              -- tool_... or pkg:<name>
    name       TEXT NOT NULL,              -- the environment variable the tool sees
    ciphertext TEXT NOT NULL,              -- v1:<key id>:<base64>, bound to tenant, tool and name
    masked     TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, tool_id, name)
);

ALTER TABLE tenant_package_tools ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

ALTER TABLE runs ADD COLUMN tool_versions TEXT;  -- JSON object: tool id -> version used
