"""Validate the device list's rows against the gateway's profiles and ports: every error names its row
and column (as the spreadsheet shows them) and all are reported at once, so an installer fixes the
sheet in one pass. Output: [[devices]] and [[contacts]] entries and the LoRa keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from drivers.lorawan.config import check_address as lorawan_address_problem
from gateway.commission.sheet import SheetRow
from gateway.model import ContactRole, ResidentCategory

RESIDENT_WORDS = {
    "独居老人": ResidentCategory.ELDERLY_ALONE, "独居": ResidentCategory.ELDERLY_ALONE,
    "残疾": ResidentCategory.DISABLED, "残障": ResidentCategory.DISABLED, "残疾人": ResidentCategory.DISABLED,
    "普通": ResidentCategory.ORDINARY, "普通住户": ResidentCategory.ORDINARY,
    "公共区域": ResidentCategory.COMMON_AREA, "公共": ResidentCategory.COMMON_AREA,
}
ROLE_WORDS = {"家属": ContactRole.RELATIVE, "子女": ContactRole.RELATIVE, "亲属": ContactRole.RELATIVE,
              "门卫": ContactRole.GUARD_ROOM, "网格员": ContactRole.GRID_WORKER, "安全员": ContactRole.SAFETY_MANAGER}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # also a bare TOML key in [lora_keys]
_PHONE = re.compile(r"^(?:\+?86)?(1[3-9][0-9]{9})$")  # a mainland mobile number (SMS goes to mobiles only)
_KEY = re.compile(r"^[0-9a-fA-F]{32}$")
_SPLIT = re.compile(r"[;；、,，/]+")
DEVICE_PREFIX = {"smoke": "smoke", "gas": "gas", "water_flow": "flow", "manhole": "manhole", "hydrant": "hydrant",
                 "pump_station": "pump", "relay_box": "relay"}


@dataclass
class Imported:
    devices: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def imei_ok(text: str) -> bool:
    """15 digits with the Luhn check digit (3GPP TS 23.003 §6.2.1)."""
    if not re.fullmatch(r"[0-9]{15}", text):
        return False
    total = 0
    for i, ch in enumerate(reversed(text)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class Validator:
    """`profiles`: name -> (type, protocol, keyed); `ports`: name -> driver; `drivers`: driver -> protocol."""

    def __init__(self, file: str, headers: dict[str, str], profiles: dict[str, tuple[str, str, bool]],
                 ports: dict[str, str], drivers: dict[str, str]) -> None:
        self.file, self.headers = file, headers
        self.profiles, self.ports, self.drivers = profiles, ports, drivers
        self.out = Imported()
        self._ids: dict[str, int] = {}
        self._addresses: dict[tuple[str, str], int] = {}
        self._phones: dict[str, str] = {}  # phone -> contact id (one contact per number)

    def error(self, row: SheetRow, column: str, message: str) -> None:
        name = self.headers.get(column, column)
        self.out.errors.append(f"{self.file}: row {row.number}, column {name}: {message}")

    def run(self, rows: list[SheetRow]) -> Imported:
        for row in rows:
            self._row(row)
        return self.out

    def _row(self, row: SheetRow) -> None:
        c = row.cells
        before = len(self.out.errors)
        prof = self.profiles.get(c.get("profile", ""))
        if prof is None:
            self.error(row, "profile", f"{c.get('profile', '')!r} is not a profile (known: {', '.join(sorted(self.profiles))})")
            return
        dev_type, protocol, keyed = prof
        loc = {k: c.get(k, "") for k in ("building", "unit", "room")}
        for k, v in loc.items():
            if len(v) > 32:
                self.error(row, k, f"{v[:40]!r} is longer than 32 characters")
        port = self._port(row, protocol)
        address = self._address(row, protocol, port)
        dev_id = self._device_id(row, dev_type, loc)
        resident = self._resident(row, loc["room"])
        key = c.get("key", "")
        if protocol == "lorawan":
            self._lorawan_key(row, key, address)
        elif protocol == "lora" and keyed and not _KEY.match(key):
            self.error(row, "key", "this keyed LoRa sensor needs its AES-128 key: 32 hex digits from the label or the supplier's list"
                       if not key else "not 32 hex digits (the sensor's AES-128 key)")
        elif key and not (protocol == "lora" and keyed):
            self.error(row, "key", f"profile {c['profile']} takes no key: leave it empty")
        contacts = self._contacts(row, dev_id, loc)
        if len(self.out.errors) > before or dev_id is None or port is None or address is None:
            return
        entry: dict[str, Any] = {"id": dev_id, "profile": c["profile"], "port": port, "address": address,
                                 **{k: v for k, v in loc.items() if v}, "resident": str(resident)}
        if contacts:
            entry["contacts"] = contacts
        self.out.devices.append(entry)
        if key:
            self.out.keys[dev_id] = key.lower()

    def _lorawan_key(self, row: SheetRow, key: str, address: int | str | None) -> None:
        """LoRaWAN keys as the credentials file holds them (drivers/lorawan/netserver.py provision): the AppKey
        for OTAA (the address is the DevEUI), NwkSKey:AppSKey for ABP (the address is the DevAddr)."""
        otaa = isinstance(address, str) and len(address) == 16
        parts = key.split(":") if key else []
        if otaa and not (len(parts) == 1 and _KEY.match(parts[0])):
            self.error(row, "key", "an OTAA LoRaWAN device (DevEUI address) needs its AppKey: 32 hex digits from the supplier's list")
        elif isinstance(address, str) and not otaa and not (len(parts) == 2 and all(_KEY.match(p) for p in parts)):
            self.error(row, "key", "an ABP LoRaWAN device (DevAddr address) needs NwkSKey:AppSKey: two times 32 hex digits")

    def _port(self, row: SheetRow, protocol: str) -> str | None:
        given = row.cells.get("port", "")
        fitting = sorted(p for p, drv in self.ports.items() if self.drivers.get(drv) == protocol)
        if given:
            if given not in self.ports:
                self.error(row, "port", f"{given!r} is not a [ports.*] section of the config (have: {', '.join(sorted(self.ports)) or 'none'})")
                return None
            if given not in fitting:
                self.error(row, "port", f"port {given} ({self.ports[given]}) cannot serve a {protocol} device")
                return None
            return given
        if len(fitting) == 1:
            return fitting[0]
        self.error(row, "port", f"no {protocol} port in the config: add one first" if not fitting
                   else f"several {protocol} ports ({', '.join(fitting)}): say which")
        return None

    def _address(self, row: SheetRow, protocol: str, port: str | None) -> int | str | None:
        text = row.cells.get("address", "")
        value: int | str
        if protocol == "nbiot":
            if not imei_ok(text):
                self.error(row, "address", f"{text!r} is not an IMEI (15 digits with a valid check digit)")
                return None
            value = text
        elif protocol == "lorawan":
            value = text.lower()
            problem = lorawan_address_problem(value)
            if problem:
                self.error(row, "address", problem)
                return None
        else:
            try:
                value = int(text, 16) if text.lower().startswith("0x") else int(text)
            except ValueError:
                value = -1
            lo, hi, what = (1, 247, "a Modbus slave id (1..247)") if protocol == "modbus" else (1, 0xFFFFFFFE, "a LoRa device id (decimal or 0x hex)")
            if not lo <= value <= hi:
                self.error(row, "address", f"{text!r} is not {what}")
                return None
        if port is not None:
            seen = self._addresses.setdefault((port, str(value)), row.number)
            if seen != row.number:
                self.error(row, "address", f"{text} is already used on port {port} by row {seen}")
                return None
        return value

    def _device_id(self, row: SheetRow, dev_type: str, loc: dict[str, str]) -> str | None:
        given = row.cells.get("id", "")
        dev_id = given or "-".join([DEVICE_PREFIX.get(dev_type, dev_type), *(v for v in loc.values() if v)])
        if not _ID.match(dev_id):
            self.error(row, "id", f"{dev_id!r} is not a device id (letters, digits, - and _; at most 64)")
            return None
        seen = self._ids.setdefault(dev_id, row.number)
        if seen != row.number:
            self.error(row, "id" if given else "room", f"device {dev_id} is already on row {seen}"
                       + ("" if given else ": give each device its own id (设备编号) or room"))
            return None
        return dev_id

    def _resident(self, row: SheetRow, room: str) -> ResidentCategory:
        text = row.cells.get("resident", "")
        if not text:
            return ResidentCategory.ORDINARY if room else ResidentCategory.COMMON_AREA
        found = RESIDENT_WORDS.get(text) or next((r for r in ResidentCategory if r.value == text), None)
        if found is None:
            self.error(row, "resident", f"{text!r} is not a resident category (独居老人, 残疾, 普通, 公共区域)")
            return ResidentCategory.COMMON_AREA
        return found

    def _contacts(self, row: SheetRow, dev_id: str | None, loc: dict[str, str]) -> list[str]:
        names = [n for n in _SPLIT.split(row.cells.get("contact_name", "")) if n]
        phones = [p for p in re.split(r"[;；、,，/\s]+", row.cells.get("contact_phone", "")) if p]
        roles = [r for r in _SPLIT.split(row.cells.get("contact_role", "")) if r]
        if not phones:
            if names:
                self.error(row, "contact_phone", "a contact without a phone number cannot be texted")
            return []
        if names and len(names) != len(phones):
            self.error(row, "contact_name", f"{len(names)} names for {len(phones)} phone numbers")
            return []
        ids = []
        for i, phone in enumerate(phones):
            m = _PHONE.match(phone.replace("-", ""))
            if m is None:
                self.error(row, "contact_phone", f"{phone!r} is not a mobile number (11 digits starting with 1)")
                continue
            role_text = roles[i] if i < len(roles) else (roles[-1] if roles else "家属")
            role = ROLE_WORDS.get(role_text) or next((r for r in ContactRole if r.value == role_text), None)
            if role is None:
                self.error(row, "contact_role", f"{role_text!r} is not a contact role (家属, 门卫, 网格员, 安全员)")
                continue
            number = "+86" + m.group(1)
            if number not in self._phones:
                cid = "rel-" + "-".join(v for v in loc.values() if v) if any(loc.values()) else f"rel-{dev_id}"
                cid = f"{cid}-{len(self._phones) + 1}" if cid in self._phones.values() else cid
                self._phones[number] = cid
                self.out.contacts.append({"id": cid, "name": names[i] if names else "家属", "role": str(role), "phone": number})
            ids.append(self._phones[number])
        return ids
