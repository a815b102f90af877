-- The request log: one row per client request.
CREATE TABLE requests (
    id TEXT PRIMARY KEY NOT NULL,
    started_at TEXT NOT NULL,              -- RFC 3339, UTC, milliseconds: sorts as text
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    client_addr TEXT,
    model TEXT,
    backend TEXT,                          -- the backend that answered
    status INTEGER,
    outcome TEXT NOT NULL,
    stream INTEGER NOT NULL,
    attempts_count INTEGER NOT NULL,
    ttfb_ms REAL,
    latency_ms REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    request_headers TEXT NOT NULL,         -- JSON, secrets masked
    request_body TEXT NOT NULL,            -- as received (secret fields masked)
    request_body_truncated INTEGER NOT NULL DEFAULT 0,
    attempts TEXT NOT NULL,                -- JSON array
    response_headers TEXT,                 -- JSON
    response_body TEXT,                    -- non-stream answers
    response_body_truncated INTEGER NOT NULL DEFAULT 0,
    chunks TEXT,                           -- JSON array of {t_ms, data} (streams)
    chunks_truncated INTEGER NOT NULL DEFAULT 0,
    parsed TEXT,                           -- JSON
    error TEXT
);
CREATE INDEX requests_started_at ON requests (started_at);
CREATE INDEX requests_model ON requests (model, started_at);
CREATE INDEX requests_backend ON requests (backend, started_at);
CREATE INDEX requests_status ON requests (status, started_at);
CREATE INDEX requests_outcome ON requests (outcome, started_at);
CREATE INDEX requests_stream ON requests (stream, started_at);
CREATE INDEX requests_latency ON requests (latency_ms);
CREATE INDEX requests_tokens ON requests (total_tokens);
