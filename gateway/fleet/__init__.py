"""Fleet operations (issue 20): signed desired configuration applied atomically with automatic
rollback, software updates committed or switched back by the gateway itself, remote diagnostics, and
the platform-side tool that publishes them. Contract: docs/fleet.md."""

# The daemon exits with this code to be restarted on a new (or restored) config. systemd restarts it
# (Restart=always in the unit); the test harness does the same. 75 is EX_TEMPFAIL: "try again".
RESTART_EXIT = 75
