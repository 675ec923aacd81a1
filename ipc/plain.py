"""Names for the two kinds of ``Any`` that are arbitrary by nature, so that each use says why.

- ``Json``: what a JSON or msgpack decoder gives back (an HTTP body, a log record, an event's
  wire map, a config table before it is structured); code that reads one checks its shape where
  it uses it.
- ``AnyField``: the attrs field a validator is called with, whatever the field's type (attrs'
  own signature for validators).

Any other ``Any`` in ipc/, kernel/ and services/ carries a comment that says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AnyField", "Json", "JsonObject"]

Json = Any
"""A decoded JSON or msgpack value (or one about to be encoded)."""

JsonObject = dict[str, Json]
"""A JSON object / msgpack map with string keys."""

if TYPE_CHECKING:
    import attrs

    AnyField = attrs.Attribute[Any]
else:  # only type checkers read it (annotations are strings): no attrs import for light entries
    AnyField = Any
"""The field an attrs validator is called with."""
