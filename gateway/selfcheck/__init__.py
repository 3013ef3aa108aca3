"""Scheduled self-check and inspection records (issue 23): the daily check at a local time, `gateway test
fire` / `gateway test power`, and the journal an inspector reads with `gateway tests --since`."""

# The control commands that change something (checked against the caller's uid by the control server);
# here, not in control.py, so the control handlers can name them without importing the power stage.
CONTROL_MUTATING = frozenset({"test_fire", "test_power", "selfcheck_run"})
