DROP INDEX requests_team_time;
DROP INDEX requests_key_time;
ALTER TABLE requests DROP COLUMN team;
ALTER TABLE requests DROP COLUMN key_name;
ALTER TABLE requests DROP COLUMN key_id;
ALTER TABLE requests DROP COLUMN cost_usd;
DROP TABLE yallmp_keys;
DROP TABLE yallmp_teams;
