-- Teams and virtual keys (docs/keys-and-spend.md). Times are Unix epoch
-- milliseconds; lists and metadata are JSON text. A key's secret is never
-- stored: only its SHA-256 (hex) and a short hint for listings.
CREATE TABLE yallmp_teams (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    models TEXT NOT NULL DEFAULT '[]',
    max_budget DOUBLE PRECISION,
    budget_duration TEXT,
    rpm_limit BIGINT,
    tpm_limit BIGINT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE TABLE yallmp_keys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    team_id TEXT,
    models TEXT NOT NULL DEFAULT '[]',
    max_budget DOUBLE PRECISION,
    budget_duration TEXT,
    rpm_limit BIGINT,
    tpm_limit BIGINT,
    expires_at BIGINT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX yallmp_keys_updated ON yallmp_keys (updated_at);
CREATE INDEX yallmp_teams_updated ON yallmp_teams (updated_at);
-- Who made each request and what it cost (NULL: no virtual key / no price).
ALTER TABLE requests ADD COLUMN cost_usd DOUBLE PRECISION;
ALTER TABLE requests ADD COLUMN key_id TEXT;
ALTER TABLE requests ADD COLUMN key_name TEXT;
ALTER TABLE requests ADD COLUMN team TEXT;
CREATE INDEX requests_key_time ON requests (key_id, started_at);
CREATE INDEX requests_team_time ON requests (team, started_at);
