-- What the response cache did for the request: hit, miss, skip (NULL: not involved).
ALTER TABLE requests ADD COLUMN cache TEXT;
