DROP INDEX requests_started_at;
CREATE INDEX requests_started_at ON requests (started_at);
CREATE INDEX requests_latency ON requests (latency_ms);
CREATE INDEX requests_tokens ON requests (total_tokens);
