"""Secrets never reach the logs: neither under secret-named keys nor inside messages or tracebacks."""

import io
import json

from gateway import log as logsetup


def _capture(level="debug", fmt="json"):
    buf = io.StringIO()
    logsetup.setup(level, fmt, gateway_id="gw-test-01", stream=buf)
    return buf


def test_every_line_carries_gateway_id_and_is_json_when_not_a_tty():
    buf = _capture()
    logsetup.get(driver="modbus_rtu").info("slave_offline", unit=3)
    line = json.loads(buf.getvalue().splitlines()[-1])
    assert line["gateway_id"] == "gw-test-01"
    assert line["event"] == "slave_offline" and line["unit"] == 3 and line["driver"] == "modbus_rtu"


def test_secret_values_are_redacted_everywhere():
    canary_pw = "canary-Pw-9f3a1c"
    canary_key = "00112233445566778899aabbccddeeff"
    logsetup.REDACTOR.set_secrets([canary_pw, canary_key])
    buf = _capture()
    lg = logsetup.get()
    lg.info("connect_failed", password=canary_pw, detail=f"auth user=gw pw={canary_pw}")
    lg.warning("odd", args={"key": canary_key, "nested": [f"x{canary_key}y"]})
    try:
        raise RuntimeError(f"broker said no to {canary_pw}")
    except RuntimeError:
        lg.exception("uplink_error")
    out = buf.getvalue()
    assert canary_pw not in out and canary_key not in out
    assert out.count(logsetup.REDACTED) >= 4
    logsetup.REDACTOR.set_secrets([])


def test_console_format_is_key_value():
    buf = _capture(fmt="console")
    logsetup.get().info("alarm_raised", device_id="smoke-2-1-401")
    assert "alarm_raised" in buf.getvalue() and "device_id=smoke-2-1-401" in buf.getvalue()


def test_level_filters_and_can_change_at_run_time():
    buf = _capture(level="warning")
    logsetup.get().info("hidden")
    logsetup.set_level("debug")
    logsetup.get().debug("shown")
    assert "hidden" not in buf.getvalue() and "shown" in buf.getvalue()


def test_library_records_share_the_stream_json_gateway_id_and_redaction():
    import logging

    canary = "canary-Lib-7e21d0"
    logsetup.REDACTOR.set_secrets([canary])
    buf = _capture()
    logging.getLogger("pymodbus.logging").warning("connect to %s failed: pw=%s", "rtu", canary)
    logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=RuntimeError(f"said {canary}"))
    logging.getLogger("paho.mqtt.client").info("below WARNING: a library's chatter stays out")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    logsetup.REDACTOR.set_secrets([])
    assert [(x["logger"], x["level"]) for x in lines] == [("pymodbus.logging", "warning"), ("asyncio", "error")]
    assert all(x["gateway_id"] == "gw-test-01" and "timestamp" in x for x in lines)
    assert lines[0]["event"] == f"connect to rtu failed: pw={logsetup.REDACTED}"
    assert "RuntimeError" in lines[1]["exception"] and canary not in buf.getvalue()


def test_damper_makes_one_line_per_window_with_a_count():
    now = [100.0]
    saved, logsetup.DAMPER = logsetup.DAMPER, logsetup.Damper(monotonic=lambda: now[0])
    try:
        buf = io.StringIO()
        logsetup.setup("debug", "json", gateway_id="gw-test-01", stream=buf, damp_s=60.0)
        lg = logsetup.get(port="/dev/ttyUSB0")
        for _ in range(70):  # one identical warning a second for 70 s
            lg.warning("port_lost", error="gone")
            lg.info("poll_ok")  # info is never damped
            now[0] += 1.0
        lg.warning("port_lost", error="other")  # other values: another line
        pending = logsetup.DAMPER.suppressed()
        lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    finally:
        logsetup.DAMPER = saved
        logsetup.setup("debug", "json", stream=io.StringIO())
    lost = [(x["error"], x.get("repeated")) for x in lines if x["event"] == "port_lost"]
    assert lost == [("gone", None), ("gone", 59), ("other", None)]
    assert pending == 9  # t=161..169, reported with the next such line
    assert sum(1 for x in lines if x["event"] == "poll_ok") == 70


def test_a_lazy_logger_made_before_setup_follows_the_setup_of_its_use():
    """gateway.fleet.runner makes its logger before the daemon configures logging; its commit/rollback
    lines must still be the configured JSON with the gateway id (issue 20)."""
    early = logsetup.get_lazy(component="fleet")
    buf = _capture("info", "json")
    early.info("config_committed", version="v2")
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert (line["event"], line["component"], line["gateway_id"]) == ("config_committed", "fleet", "gw-test-01")
