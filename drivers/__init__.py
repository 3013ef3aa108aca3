"""Protocol drivers: one subpackage per protocol (driver, framing, simulator side by side)."""
