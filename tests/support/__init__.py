"""Real peers for the tests: mosquitto on a free loopback port, pty pairs, waiting helpers."""
