ALTER TABLE requests DROP COLUMN cache;
