"""The restart-storm drill's mailbox drain, on a real node: a message that was dead-lettered
during the storm (``max_deliver`` deliveries whose acks never landed) is not lost, it is held;
the drain redrives it, consumes and acks it, and counts it, instead of waiting for a delivery
that cannot come (the "unsettled 1, not drained in time" of a loaded machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from kernel.cli.chaos import mail_workload
from kernel.cli.chaos.mail_workload import MailWorkload
from tests.support.mail_client import MailHttp
from tests.support.node_harness import FAST_CONFIG, start_node
from tests.support.profile_config import services_toml

pytestmark = pytest.mark.integration
SEED = 7


async def test_the_drain_redrives_what_the_storm_dead_lettered(tmp_path: Path) -> None:
    config = FAST_CONFIG + "\n" + services_toml("micronode", {"svc-mailbox": {"max_deliver": 1}})
    with trio.fail_after(60):
        async with start_node(tmp_path, config=config) as node:
            mb = await MailHttp.of(node)
            workload = MailWorkload(node.ready_line["gateway"], mb.token, seed=SEED, rate=1.0)
            key = f"chaos-{SEED}-0"
            workload.ledger.unsure.add(key)
            assert await workload._send(key)  # an acknowledged send
            msg_id = workload.ledger.acked_sends[key]
            # the storm: a consumer processed it, its ack never landed, and with max_deliver 1
            # that one delivery sent it to the dead-letter queue
            (got,) = await trio.to_thread.run_sync(lambda: mb.receive(f"chaos-{SEED}"))
            workload.ledger.delivered[msg_id] = 1
            nacked = await trio.to_thread.run_sync(
                mb.change, f"chaos-{SEED}", "nack", [got["receipt"]]
            )
            assert nacked.status == 200
            assert workload.ledger.unsettled() == [msg_id]

            assert await workload.drain(10.0) is True
            assert workload.ledger.unsettled() == [] and msg_id in workload.ledger.acked
            assert workload.ledger.dead_lettered == 1


async def test_an_ack_cut_off_in_flight_counts_as_maybe_acked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storm ends (its consumers are cancelled) while an ack is on the wire: the node may
    have applied it, so the message never comes back. The ledger must count it as maybe acked,
    not as owed a delivery that can never come (the CI flake "unsettled 1, 0 redeliveries")."""
    with trio.fail_after(60):
        async with start_node(tmp_path) as node:
            mb = await MailHttp.of(node)
            workload = MailWorkload(node.ready_line["gateway"], mb.token, seed=SEED, rate=1.0)
            key = f"chaos-{SEED}-0"
            workload.ledger.unsure.add(key)
            assert await workload._send(key)
            msg_id = workload.ledger.acked_sends[key]

            applied = trio.Event()
            real = mail_workload.request

            async def ack_then_hang(method: str, url: str, **kw: Any) -> Any:
                answer = await real(method, url, **kw)
                if url.endswith("/ack") and not applied.is_set():
                    applied.set()  # the node acked it; its answer is never read
                    await trio.sleep_forever()
                return answer

            monkeypatch.setattr(mail_workload, "request", ack_then_hang)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(workload._consume)
                await applied.wait()
                nursery.cancel_scope.cancel()  # the storm is over
            assert workload.ledger.delivered == {msg_id: 1}

            assert await workload.drain(5.0) is True
            assert workload.ledger.unsettled() == [] and msg_id in workload.ledger.ack_unknown
