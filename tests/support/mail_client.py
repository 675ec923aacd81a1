"""A test's HTTP client for one node's mailbox routes (blocking calls: run them in threads)."""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs

from tests.support.node_harness import Response, RunningNode, http_request

__all__ = ["MailHttp"]


@attrs.define
class MailHttp:
    host: str
    port: int
    token: str

    @classmethod
    async def of(cls, node: RunningNode) -> MailHttp:
        host, port = node.ready_line["gateway"].removeprefix("http://").rsplit(":", 1)
        return cls(host, int(port), await node.mint(ops=["mail"], ttl=3600))

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> Response:
        all_headers = {"authorization": f"Bearer {self.token}", **headers}
        return http_request(self.host, self.port, method, path, body, all_headers, timeout=30)

    def send(self, mailbox: str, body: bytes, key: str | None = None) -> Response:
        extra = {} if key is None else {"idempotency-key": key}
        return self.request("POST", f"/mb/{mailbox}", body, **extra)

    def receive(self, mailbox: str, **query: Any) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        resp = self.request("POST", f"/mb/{mailbox}/receive?{qs}")
        assert resp.status == 200, resp.body
        messages: list[dict[str, Any]] = resp.json()["messages"]
        for m in messages:
            m["body"] = base64.b64decode(m["body"])
        return messages

    def change(self, mailbox: str, action: str, receipts: list[str], **extra: Any) -> Response:
        doc = json.dumps({"receipts": receipts, **extra}).encode()
        return self.request(
            "POST", f"/mb/{mailbox}/{action}", doc, **{"content-type": "application/json"}
        )
