-- Latency and token filters are served by the time index, which now carries
-- both columns (as in SQLite): the admin views page newest first and filter
-- as they scan. `id` follows `started_at` so cursor paging (started_at, id)
-- is served by the same index. Separate indexes on latency and tokens cost every logged
-- request writes in scattered index pages.
DROP INDEX requests_latency;
DROP INDEX requests_tokens;
DROP INDEX requests_started_at;
CREATE INDEX requests_started_at ON requests (started_at DESC, id DESC) INCLUDE (latency_ms, total_tokens);
