"""Plain data: what a JSON or msgpack decoder gives back, named so that its ``Any`` says why.

A decoded value is arbitrary by nature (``Any``); code that reads one checks its shape where it
uses it. These names are the one documented reason for ``Any`` at a boundary: an HTTP body, a log
record, an event's wire map, a config table before it is structured.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Json", "JsonObject"]

Json = Any
"""A decoded JSON or msgpack value (or one about to be encoded)."""

JsonObject = dict[str, Json]
"""A JSON object / msgpack map with string keys."""
