"""Local rules: typed rule kinds, alarm lifecycle persisted in SQLite, the engine that drives local actions."""
