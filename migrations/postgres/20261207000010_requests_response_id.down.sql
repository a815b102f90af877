DROP INDEX requests_response_id;
ALTER TABLE requests DROP COLUMN response_turn;
ALTER TABLE requests DROP COLUMN response_id;
