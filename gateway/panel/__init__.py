"""The local web panel (issue 24): a separate process that shows the guard and the installer what the
daemon knows, talking to it only through the control socket (docs/panel.md)."""
