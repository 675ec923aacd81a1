"""svc-dht's logic on an in-memory network (``tests/support/dht_net.py``): joins, provides and
finds; and every hostile input of issue 27 refused, counted, and bounded."""

from __future__ import annotations

import random

import attrs
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ipc import oap
from ipc.proto import dht
from services.dht.links import Unreachable
from services.dht.settings import DhtSettings
from services.dht.wire import peer_to_wire, provider_to_wire
from services.lib.kad import Contact, Signer, text_of
from services.lib.kad.records import VALIDITY
from tests.support.dht_net import Net

DEADLINE = 30.0


async def joined(size: int) -> Net:
    net = Net()
    nodes = [net.add() for _ in range(size)]
    boot = nodes[0]
    for node in nodes[1:]:
        node.state.table.seen(boot.contact, trio.current_time())
        await node.lookups.find_node(node.state.own)
    for node in nodes:  # a refresh round, as the service's upkeep would
        await node.lookups.find_node(node.state.own)
    return net


async def test_an_object_provided_on_one_node_is_found_from_any_other() -> None:
    with trio.fail_after(DEADLINE):
        net = await joined(40)
        nodes = list(net.nodes.values())
        key = random.getrandbits(256)
        nodes[5].state.providing.add(key)
        took = await nodes[5].providing.provide({key})
        assert took[key] >= 8  # the k nearest took it
        for finder in nodes[10:20]:
            found = await finder.lookups.find_providers(key)
            assert list(found.providers) == [nodes[5].state.own]
            assert found.lookup.hops <= 4
        assert nodes[5].state.missing == set()


async def test_a_sweep_costs_messages_per_region_not_per_object() -> None:
    with trio.fail_after(DEADLINE):
        net = await joined(40)
        source = next(iter(net.nodes.values()))
        keys = {random.getrandbits(256) for _ in range(400)}
        source.state.providing |= keys
        singles = []
        for key in list(keys)[:10]:  # one lookup and k stores per object: the baseline
            before = net.messages
            await source.providing.provide({key})
            singles.append(net.messages - before)
        before = net.messages
        took = await source.providing.provide(keys)
        swept = net.messages - before
        assert all(n >= source.state.settings.k for n in took.values())
        per_object = sum(singles) / len(singles) * len(keys)
        assert per_object / swept >= 10, (per_object, swept)


async def test_a_big_sweep_goes_in_paced_slices_of_neighbouring_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start with a full store offers every record: in slices that leave the CPU to the
    node's other services three quarters of the time, each slice's keys neighbours (so it
    costs few regions' lookups), and every key still reaches its k nearest."""
    from services.dht import providing

    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        await trio.lowlevel.checkpoint()

    monkeypatch.setattr(providing, "_pause", pause)
    monkeypatch.setattr(providing, "PACE_BATCH", 100)
    with trio.fail_after(DEADLINE):
        net = await joined(40)
        source = next(iter(net.nodes.values()))
        keys = {random.getrandbits(256) for _ in range(450)}
        source.state.providing |= keys
        before = net.messages
        took = await source.providing.provide(keys)
        unpaced = net.messages - before
        assert pauses == []
        before = net.messages
        took = await source.providing.provide(keys, paced=True)
        assert len(pauses) == 5 and all(p > 0 for p in pauses)
        assert set(took) == keys and all(n >= source.state.settings.k for n in took.values())
        assert net.messages - before <= 3 * unpaced  # neighbours: not a lookup per key


async def test_forged_replayed_and_foreign_records_are_refused_and_counted() -> None:
    net = Net()
    node, alice = net.add(), net.add()
    mallory = Signer(Ed25519PrivateKey.generate())
    now = int(net.wall())
    good = alice.state.record()
    answer = node.responder.answer
    via = {"via": text_of(alice.state.own), "ip": "127.0.0.1"}
    assert await answer(dht.PutPeer(record=peer_to_wire(good), **via)) == dht.Added(1, 0)
    older = alice.state.signer.peer(("127.0.0.1:1",), seq=good.seq - 1, expires=now + 60)
    assert await answer(dht.PutPeer(record=peer_to_wire(older), **via)) == dht.Added(0, 1)
    forged = attrs.evolve(peer_to_wire(good), addrs=("6.6.6.6:1",))
    assert await answer(dht.PutPeer(record=forged, **via)) == dht.Added(0, 1)
    # Mallory's own record signed by her, sent as Alice's: the key is not Alice's id
    theirs = peer_to_wire(mallory.peer(("6.6.6.6:1",), seq=10**18, expires=now + 60))
    assert await answer(dht.GetPeer(node_id=text_of(alice.state.own))) is not None
    reply = await answer(dht.GetPeer(node_id=text_of(alice.state.own)))
    assert reply.record == peer_to_wire(good)
    expired = peer_to_wire(alice.state.signer.peer(("h:1",), seq=good.seq + 1, expires=now - 1))
    assert await answer(dht.PutPeer(record=expired, **via)) == dht.Added(0, 1)
    # a sender record that is not the connection's node is ignored (never a contact)
    await answer(dht.Ping(sender=theirs, **via))
    assert mallory.node not in node.state.table
    assert node.stats.rejections == {"replay": 1, "signature": 1, "expired": 1, "node_id": 1}


async def test_a_batch_past_the_per_source_share_is_refused_and_counted() -> None:
    net = Net(DhtSettings(k=8, per_source=100, rate=1e9, burst=10**9))
    node, flooder = net.add(), net.add()
    signer = flooder.state.signer
    expires = int(net.wall()) + VALIDITY
    keys = [random.getrandbits(256) for _ in range(300)]
    records = [signer.provider(k, flooder.state.addrs, expires) for k in keys]
    batch = dht.AddProviders(
        public=signer.public,
        addrs=flooder.state.addrs,
        expires=expires,
        keys=tuple(k.to_bytes(32, "big") for k in keys),
        sigs=tuple(r.sig for r in records),
        via=text_of(signer.node),
    )
    assert await node.responder.answer(batch) == dht.Added(100, 200)
    assert node.stats.rejections == {"share": 200}
    assert len(node.state.store) == 100
    # a forged signature inside a batch costs only that record
    bad = attrs.evolve(batch, keys=batch.keys[:2], sigs=(batch.sigs[1], batch.sigs[1]))
    node.state.store.per_source = 1000
    assert await node.responder.answer(bad) == dht.Added(1, 1)


async def test_a_find_node_flood_is_rate_limited_per_peer_and_per_ip() -> None:
    net = Net(DhtSettings(k=8, rate=5.0, burst=10))
    node, asker = net.add(), net.add()
    target = text_of(random.getrandbits(256))
    answered = refused = 0
    retry = 0
    for _ in range(100):
        try:
            await node.responder.answer(
                dht.FindNode(target=target, via=text_of(asker.state.own), ip="10.9.9.9")
            )
            answered += 1
        except oap.OapError as exc:
            assert exc.reason == "rate_limited"
            retry = exc.retry_after
            refused += 1
    assert answered == 10 and refused == 90 and retry >= 1
    # fresh identities from the same address share that address's bucket
    with pytest.raises(oap.OapError):
        await node.responder.answer(
            dht.FindNode(target=target, via=text_of(random.getrandbits(256)), ip="10.9.9.9")
        )
    assert node.stats.rejections["rate_limited"] == 91
    assert len(node.responder.limit) <= node.responder.limit.max_keys


async def test_a_thousand_identities_from_one_address_do_not_fill_a_bucket() -> None:
    net = Net()
    node = net.add()
    honest = [net.add() for _ in range(3)]
    for h in honest:
        await node.responder.answer(
            dht.Ping(
                sender=peer_to_wire(h.state.record()), via=text_of(h.state.own), ip="127.0.0.1"
            )
        )
    now = int(net.wall())
    for i in range(1000):
        fake = Signer(Ed25519PrivateKey.generate())
        record = fake.peer((f"66.6.6.{i % 250}:{7000 + i}",), seq=1, expires=now + 60)
        await node.responder.answer(
            dht.Ping(sender=peer_to_wire(record), via=text_of(fake.node), ip="66.6.6.6")
        )
    table = node.state.table
    for index in table.bucket_sizes():
        assert sum(1 for c in table.bucket(index) if c.host.startswith("66.6.6.")) <= 2
    assert all(h.state.own in table for h in honest)  # live contacts are never evicted


async def test_an_answer_with_ten_thousand_contacts_is_cut_to_k() -> None:
    net = Net()
    node = net.add()
    liar = Contact(random.getrandbits(256), "127.0.0.1", 9)
    node.state.table.seen(liar, 0.0)
    flood = tuple(Contact(random.getrandbits(256), "127.0.0.1", 1).addr for _ in range(10_000))
    with pytest.raises(ValueError):
        dht.Nodes(flood)  # the wire refuses it whole (schema_invalid)
    asked: list[Contact] = []

    async def ask(contact: Contact, request: object, timeout: float) -> object:
        asked.append(contact)
        if contact == liar:
            with attrs.validators.disabled():  # as if the wire had let it through
                return dht.Nodes(flood)
        raise Unreachable("refused")

    node.lookups.ask = ask
    with trio.fail_after(DEADLINE):
        outcome = await node.lookups.find_node(random.getrandbits(256))
    assert len(asked) <= 1 + node.state.settings.k
    assert not outcome.complete


def test_provider_records_round_trip_the_wire() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    record = signer.provider(5, ("127.0.0.1:1",), 2_000_000_000)
    wire = provider_to_wire(record)
    frame = dht.PEER.request_frame(dht.FindProviders(id=text_of(5, "b3:")))
    reply = dht.PEER.parse_reply(
        dht.PEER.reply_frame(frame, dht.ProvidersAnswer((wire,))),
        dht.FindProviders(id=text_of(5, "b3:")),
    )
    assert reply.providers == (wire,)
