DROP INDEX requests_client_request_id;
ALTER TABLE requests DROP COLUMN client_request_id;
