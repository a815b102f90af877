-- The client's x-request-id, kept beside the proxy's own id (the key), so a
-- client can find its requests but never overwrite or hide a record.
ALTER TABLE requests ADD COLUMN client_request_id TEXT;
CREATE INDEX requests_client_request_id ON requests (client_request_id);
