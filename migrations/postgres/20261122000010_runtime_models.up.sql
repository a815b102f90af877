-- Runtime models (the admin API's overlay) shared by every instance on this
-- database: one row, replaced whole, its version bumped on every change.
CREATE TABLE IF NOT EXISTS yallmp_runtime_models (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    version     BIGINT NOT NULL,
    overlay     TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
