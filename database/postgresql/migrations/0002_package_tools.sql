-- Package tools: a global catalog of the tools installed plugins register, and which tenant
-- has enabled which. A tenant uses a package tool only once it is enabled for that tenant.

CREATE TABLE package_tools (
    name           TEXT PRIMARY KEY,
    plugin         TEXT NOT NULL,
    distribution   TEXT,
    version        TEXT,
    description    TEXT NOT NULL,
    inputs         TEXT NOT NULL,          -- JSON object, as smolagents Tool.inputs
    output_type    TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,          -- of the tool's metadata and source
    available      INTEGER NOT NULL DEFAULT 1,
    updated_at     TEXT NOT NULL
);

CREATE TABLE tenant_package_tools (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    tool_name  TEXT NOT NULL REFERENCES package_tools(name) ON DELETE CASCADE,
    enabled_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, tool_name)
);
