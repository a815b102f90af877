-- The request log: one row per client request.
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    client_addr TEXT,
    model TEXT,
    backend TEXT,
    status INTEGER,
    outcome TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    attempts_count INTEGER NOT NULL,
    ttfb_ms DOUBLE PRECISION,
    latency_ms DOUBLE PRECISION NOT NULL,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    total_tokens BIGINT,
    request_headers JSONB NOT NULL,
    request_body JSONB,                    -- the body as JSON, when it is JSON
    request_body_text TEXT NOT NULL,       -- the body as received (secret fields masked)
    request_body_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    attempts JSONB NOT NULL,
    response_headers JSONB,
    response_body JSONB,
    response_body_text TEXT,
    response_body_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    chunks JSONB,
    chunks_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    parsed JSONB,
    error TEXT
);
CREATE INDEX requests_started_at ON requests (started_at DESC);
CREATE INDEX requests_model ON requests (model, started_at DESC);
CREATE INDEX requests_backend ON requests (backend, started_at DESC);
CREATE INDEX requests_status ON requests (status, started_at DESC);
CREATE INDEX requests_outcome ON requests (outcome, started_at DESC);
CREATE INDEX requests_stream ON requests (stream, started_at DESC);
CREATE INDEX requests_latency ON requests (latency_ms);
CREATE INDEX requests_tokens ON requests (total_tokens);
