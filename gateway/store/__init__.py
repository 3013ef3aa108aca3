"""The store-and-forward outbox (SQLite, WAL): every record stays until each uplink consumer acknowledged it."""
