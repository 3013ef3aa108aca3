-- Alarm state and history of the rule engine (gateway/rules/, issue 7).
-- Written only inside Outbox.transact, in the same transaction as the ALARM outbox record of each
-- transition, so state and record are atomic. Stamps are JSON arrays [wall_s, boot_id, mono_ns, synced].

CREATE TABLE IF NOT EXISTS alarm (
    id              TEXT PRIMARY KEY,
    rule            TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    severity        INTEGER NOT NULL,          -- gateway.model.Severity (0 critical .. 3 info)
    state           TEXT NOT NULL,             -- raised | acknowledged | cleared
    title           TEXT NOT NULL,
    raised          TEXT NOT NULL,             -- Stamp
    updated         TEXT NOT NULL,             -- Stamp of the last transition or repeat
    updated_wall_s  REAL NOT NULL,             -- for history queries
    acknowledged_by TEXT NOT NULL DEFAULT '',
    cleared_by      TEXT NOT NULL DEFAULT '',
    repeats         INTEGER NOT NULL DEFAULT 0,
    silenced        INTEGER NOT NULL DEFAULT 0, -- sounder silenced (alarm still unacknowledged)
    tier            INTEGER NOT NULL DEFAULT 0, -- escalation tiers reached (notifications owed)
    detail          TEXT NOT NULL DEFAULT '{}'
);

-- One active alarm per (rule, device), enforced by the database too.
CREATE UNIQUE INDEX IF NOT EXISTS alarm_active ON alarm (rule, device_id) WHERE state != 'cleared';
CREATE INDEX IF NOT EXISTS alarm_updated ON alarm (updated_wall_s);

CREATE TABLE IF NOT EXISTS alarm_history (
    id         INTEGER PRIMARY KEY,
    alarm_id   TEXT NOT NULL,
    transition TEXT NOT NULL,                  -- raised | acknowledged | cleared | silenced | escalated
    by         TEXT NOT NULL DEFAULT '',
    stamp      TEXT NOT NULL,
    seq        INTEGER NOT NULL,               -- the outbox record carrying this transition
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alarm_history_alarm ON alarm_history (alarm_id);

-- SMS sent per (alarm, tier, contact): a restart does not send them again.
CREATE TABLE IF NOT EXISTS alarm_notice (
    alarm_id   TEXT NOT NULL,
    tier       INTEGER NOT NULL,
    contact_id TEXT NOT NULL,
    outcome    TEXT NOT NULL,                  -- sent | rate_limited
    wall_s     REAL NOT NULL,
    PRIMARY KEY (alarm_id, tier, contact_id)
);
