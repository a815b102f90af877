-- Responses that yallmp made itself (a /v1/responses request translated to
-- chat completions or Anthropic Messages): the id it gave the answer, and the
-- turn as JSON (the client scope, the previous response id, the request's own
-- input items and the Responses object), so `previous_response_id` and
-- `GET /v1/responses/{id}` can be served from the log.
ALTER TABLE requests ADD COLUMN response_id TEXT;
ALTER TABLE requests ADD COLUMN response_turn TEXT;
CREATE INDEX requests_response_id ON requests (response_id);
