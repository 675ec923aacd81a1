"""Declared routes: the one routing style of the node's HTTP planes and of the gateway.

A route is a path template and what each method does (``Route("/o/{id}", {"GET": ...})``); a
``Router`` finds the route of a path. The template is also the ``route`` label of
``http_requests_total``, so a scanner probing random paths never grows the label set, and a
route's ``allow`` (``GET, HEAD``) answers a 405. What a method maps to is the caller's: the admin
planes map to handlers, the gateway to its ops (handler, latency label, admission class).

Matching: ``/a/{x}`` takes one non-empty segment per parameter; a route with ``tail=True`` gives
its last parameter the whole rest of the path (non-empty, slashes included: ``/names/{name}``).
A trailing slash or an empty segment matches nothing (a 404, never a guess).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

import attrs

__all__ = ["Route", "Router"]

H = TypeVar("H")


@attrs.frozen
class Route(Generic[H]):
    """A path template and what each method does."""

    template: str
    methods: Mapping[str, H]
    tail: bool = False  # the last parameter takes the rest of the path
    _parts: tuple[str, ...] = attrs.field(init=False)

    @_parts.default
    def _split(self) -> tuple[str, ...]:
        if not self.template.startswith("/"):
            raise ValueError(f"a route template starts with '/': {self.template!r}")
        return tuple(self.template[1:].split("/"))

    @property
    def first(self) -> str | None:
        """The first segment when it is a literal (what a ``Router`` indexes by)."""
        head = self._parts[0]
        return None if head.startswith("{") else head

    @property
    def allow(self) -> str:
        """The methods, as an ``Allow`` header says them."""
        return ", ".join(sorted(self.methods))

    def match(self, path: str) -> dict[str, str] | None:
        """Template parameters if ``path`` fits, else None."""
        if not path.startswith("/"):
            return None
        parts = path[1:].split("/")
        want = self._parts
        if self.tail:
            if len(parts) < len(want):
                return None
            parts = [*parts[: len(want) - 1], "/".join(parts[len(want) - 1 :])]
        elif len(parts) != len(want):
            return None
        params: dict[str, str] = {}
        for template, got in zip(want, parts, strict=True):
            if template.startswith("{") and template.endswith("}"):
                if not got:
                    return None
                params[template[1:-1]] = got
            elif template != got:
                return None
        return params


class Router(Generic[H]):
    """Routes by their first literal segment, then in the order given."""

    def __init__(self, routes: Iterable[Route[H]]) -> None:
        self.routes = tuple(routes)
        self._by_first: dict[str | None, list[Route[H]]] = {}
        for route in self.routes:
            self._by_first.setdefault(route.first, []).append(route)

    def match(self, path: str) -> tuple[Route[H], dict[str, str]] | None:
        """The first route ``path`` fits and its parameters; None if none fits."""
        head = path[1:].split("/", 1)[0] if path.startswith("/") else ""
        for route in (*self._by_first.get(head, ()), *self._by_first.get(None, ())):
            params = route.match(path)
            if params is not None:
                return route, params
        return None
