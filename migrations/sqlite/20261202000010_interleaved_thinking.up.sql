-- Interleaved thinking: the reasoning of assistant turns, given back to the
-- model when a client resends the turn without it. One row per key (a turn
-- has several: its tool call ids, its content hash, each call's hash).
-- Times are Unix milliseconds; rows past expires_at are never read and are
-- pruned in the background.
CREATE TABLE interleaved_thinking (
    key TEXT PRIMARY KEY NOT NULL,
    model TEXT NOT NULL,
    source TEXT NOT NULL,
    reasoning TEXT NOT NULL,
    signature TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX interleaved_thinking_expires ON interleaved_thinking (expires_at);
