-- The outbox (issue 3): one seq counter across classes, per-consumer delivery bits, compact telemetry.
-- Applied by gateway/store/migrate.py inside one transaction; PRAGMA user_version follows the newest file.

-- Small facts of the store, all on one page: store_id, last_seq (the never-reuse high-water mark,
-- written in the same transaction as every seq it covers), telemetry row count, evicted count.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY
) WITHOUT ROWID;

-- Interned strings (device ids, boot ids, driver names, value-key sets): telemetry rows carry small
-- integers instead of a 36-character boot id per reading (SD wear budget: <= 200 bytes/reading).
CREATE TABLE name (
    ix   INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,                     -- 0 device, 1 boot, 2 via, 3 value keys
    text TEXT NOT NULL
);

-- Named uplinks and the bit each owns in `pending`.
CREATE TABLE consumer (
    name    TEXT PRIMARY KEY,
    bit     INTEGER NOT NULL UNIQUE,
    classes INTEGER NOT NULL                   -- bitmask of RecordClass values wanted
);

-- Alarms, events and status: few, readable with the sqlite3 shell at 3 a.m. (JSON text).
CREATE TABLE record (
    seq     INTEGER PRIMARY KEY,               -- the store-wide counter; never reused
    cls     INTEGER NOT NULL,                  -- RecordClass: 0 alarm, 1 event, 2 status
    pending INTEGER NOT NULL,                  -- consumer bits still owed this record
    kind    TEXT NOT NULL,
    device  TEXT NOT NULL,
    stamp   TEXT NOT NULL,                     -- JSON [wall_s, boot_id, mono_ns, clock_synced]
    body    TEXT NOT NULL                      -- JSON object
);
-- fetch orders by (cls, seq): alarms first, FIFO within a class.
CREATE INDEX record_cls ON record (cls, seq);

-- Telemetry: seq is the rowid, so appends fill pages in order and no other index is written.
CREATE TABLE telemetry (
    seq     INTEGER PRIMARY KEY,
    pending INTEGER NOT NULL,
    body    BLOB NOT NULL                      -- msgpack [device, boot, wall_s, mono_ns, synced, keys, values, via]
);
