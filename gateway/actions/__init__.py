"""Local actions on alarms: guard-room sounder, SMS, escalation. The daemon implements ActionContext."""

from gateway.actions.context import ActionContext

__all__ = ["ActionContext"]
