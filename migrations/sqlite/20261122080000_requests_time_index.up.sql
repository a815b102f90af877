-- Latency and token filters are served by the time index, which now carries
-- both columns: the admin views page newest first and filter as they scan,
-- without reading rows. `id` follows `started_at` so cursor paging
-- (started_at, id) is served by the same index. A separate index on latency (a random value) cost
-- each logged request a B-tree page write in scattered places: more than a
-- third of the log's database writes.
DROP INDEX requests_latency;
DROP INDEX requests_tokens;
DROP INDEX requests_started_at;
CREATE INDEX requests_started_at ON requests (started_at, id, latency_ms, total_tokens);
