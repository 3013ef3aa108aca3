-- Downlink command nonces (gateway/uplink/commands.py NonceCache, issue 3): a signed command's nonce is
-- remembered for 2 x command_window_s so the same command replayed, even after a restart, is refused.
-- Written only inside Outbox.transact (durable). Rows older than the window are pruned on each insert.

CREATE TABLE IF NOT EXISTS uplink_nonce (
    key_id      TEXT NOT NULL,
    nonce       TEXT NOT NULL,                 -- <= 64 chars, checked before insert
    issued_at   INTEGER NOT NULL,              -- the command's own issued_at (Unix s)
    seen_wall_s REAL NOT NULL,                 -- gateway wall clock when accepted (synced clocks only)
    PRIMARY KEY (key_id, nonce)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS uplink_nonce_seen ON uplink_nonce (seen_wall_s);
