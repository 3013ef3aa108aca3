"""Live view of the daemon's JSON log lines for the demo: the facts a person watching wants (alarms,
sounder, SMS, uplink state, queue depth), one readable line each; everything else dropped."""

from __future__ import annotations

import json
import sys

# Log events worth showing in the demo, and the fields to print with each.
SHOW = {
    "daemon_ready": ("ports", "devices"),
    "alarm_raised": ("alarm_id", "rule", "device_id", "severity", "seq"),
    "alarms_restored": ("count",),
    "output_written": ("device_id", "target", "value", "reason"),
    "sms_sent": ("alarm_id", "tier", "contact"),
    "sms_accepted": ("number", "parts"),
    "sms_rate_limited": ("contact",),
    "action_failed": ("action", "device_id", "error"),
    "uplink_connected": ("broker",),
    "uplink_disconnected": ("rc",),
    "uplink_publish_recovered": (),
    "slave_offline": ("device_id",),
    "slave_online": ("device_id",),
    "daemon_stopped": (),
}


def main() -> None:
    for line in sys.stdin:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        event = doc.get("event", "")
        if event not in SHOW and doc.get("level") not in ("error", "critical"):
            continue
        fields = " ".join(f"{k}={doc[k]}" for k in SHOW.get(event, ("error",)) if k in doc)
        print(f"gateway: {event} {fields}", flush=True)


if __name__ == "__main__":
    main()
