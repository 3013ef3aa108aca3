"""gateway.config.write: configs we generate (simulated courtyard, fleet patches) are written with
`[[name]]` blocks, so a commissioning import can still append its own `[[contacts]]`/`[[devices]]`."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.config.write import dumps_config

ROOT = Path(__file__).resolve().parents[2]

keys = st.text(alphabet="abcxyz_- 号", min_size=1, max_size=6)
scalars = st.one_of(st.integers(-5, 5), st.text(max_size=8), st.booleans(), st.lists(st.integers(0, 3), max_size=3))
tables = st.recursive(st.dictionaries(keys, scalars, max_size=4),
                      lambda inner: st.dictionaries(keys, st.one_of(scalars, inner, st.lists(inner, min_size=1, max_size=3)), max_size=4),
                      max_leaves=12)


def test_the_example_config_round_trips_and_short_contacts_stay_blocks() -> None:
    doc = tomllib.loads((ROOT / "config" / "gateway.example.toml").read_text())
    text = dumps_config(doc)
    assert tomllib.loads(text) == doc
    assert "[[contacts]]" in text and "contacts = [\n    {" not in text


def test_an_import_can_append_contacts_and_devices_to_a_generated_config() -> None:
    doc = {"profiles_dir": "p", "contacts": [{"id": "guard", "phone": "+8613800000001"}],
           "devices": [{"id": "d1", "contacts": ["guard"]}], "rules": [{"id": "r", "when": {"x": 1}}]}
    appended = dumps_config(doc) + '\n[[contacts]]\nid = "rel"\nphone = "+8613900000001"\n\n[[devices]]\nid = "d2"\n'
    merged = tomllib.loads(appended)
    assert [c["id"] for c in merged["contacts"]] == ["guard", "rel"] and [d["id"] for d in merged["devices"]] == ["d1", "d2"]


@given(tables)
def test_any_document_round_trips(doc: dict) -> None:
    assert tomllib.loads(dumps_config(doc)) == doc
