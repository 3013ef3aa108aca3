"""What each AT command we send looks like to the parser (prefix, bare lines, prompt) and how long it may take.

Timings from protocols.md §1.3: 300 ms for queries, 5-10 s for CFUN / CGATT / NRB (RT-Thread uses 5 s for
init commands), up to 120 s for CMGS on SMS modules. A default that is wrong for a command fails loudly
(timeout or unexpected line counted), never silently, so the table only lists the exceptions.
"""

from __future__ import annotations

import re

import msgspec

from drivers.cellular.at import CALL_WORDS, AtCommand


class Timeouts(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Seconds of silence allowed before a command counts as unanswered (see AtChannel.command)."""

    query_s: float = 0.3
    slow_s: float = 10.0
    sms_s: float = 120.0


# Commands that answer with unprefixed lines (BC95 manual; RT-Thread at_device bc28 / ec200x).
_BARE = {"ATI", "AT+CGMR", "AT+CIMI", "AT+NUESTATS", "AT+NSOCR", "AT+NSORF", "AT+NSOST", "AT+CGSN", "AT+GSN"}
_SLOW = {"AT+CFUN", "AT+CGATT", "AT+NRB", "AT+COPS", "AT+NCONFIG", "AT+NBAND", "AT+CPSMS", "AT+CEDRXS"}
_HEAD = re.compile(r"^(AT[+&]?[A-Z0-9]*)(.*)$")


def command_for(text: str, timeouts: Timeouts) -> tuple[AtCommand, float]:
    """The parser's view of `text` and its silence timeout."""
    m = _HEAD.match(text)
    head, rest = (m.group(1), m.group(2)) if m else (text, "")
    if head == "AT+CGSN" and rest == "=1":
        return AtCommand(text, prefix="+CGSN"), timeouts.query_s  # BC95: "+CGSN:<IMEI>"
    if head == "AT+CMGS":
        return AtCommand(text, prefix="+CMGS", prompt=True), timeouts.sms_s
    if text.startswith("ATD"):
        # Voice dial "ATD<number>;": OK once the call is being set up, or a call progress word at once.
        return AtCommand(text, finals=CALL_WORDS), timeouts.slow_s
    if head in ("AT+QTTS", "AT+QTONEDET") and rest.startswith("="):
        # Their +QTTS / +QTONEDET lines are always unsolicited (play finished, key pressed), never the answer.
        return AtCommand(text), timeouts.query_s
    if head == "ATH":
        return AtCommand(text), timeouts.slow_s  # releasing a call can take the network a few seconds
    if head == "AT+NRB":
        # The module answers REBOOTING and restarts; its banner is then reboot evidence (re-init).
        return AtCommand(text, finals=("REBOOTING",)), timeouts.slow_s
    timeout = timeouts.slow_s if head in _SLOW and not rest.endswith("?") else timeouts.query_s
    if head in _BARE:
        return AtCommand(text, bare=True), timeout
    prefix = "+" + head[3:] if head.startswith("AT+") else ""
    return AtCommand(text, prefix=prefix), timeout
