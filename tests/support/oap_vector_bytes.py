"""How `specs/oap_vectors.json` spells bytes: hex, or a repeated pattern (big payloads stay small
in the file), or a list of such segments. One reader for every test that uses the vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECS = Path(__file__).resolve().parents[2] / "specs"


def load_vectors() -> dict[str, Any]:
    return json.loads((SPECS / "oap_vectors.json").read_text())


def spec_bytes(spec: dict[str, Any]) -> bytes:
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    pattern = bytes.fromhex(spec["repeat"])
    whole, part = divmod(spec["len"], len(pattern))
    return pattern * whole + pattern[:part]


def vector_bytes(vec: dict[str, Any]) -> bytes:
    if "hex" in vec:
        return bytes.fromhex(vec["hex"])
    return b"".join(spec_bytes(s) for s in vec["segments"])
