"""``ronctl chaos ...``: the drills operators run on purpose (ops/runbooks/restart-storm.md).

- ``chaos restart-storm``: workload + seeded faults against a node the drill starts
  (``--profile``) or a running one (``--admin``); verifies and reports; exit 1 when anything was
  lost or an invariant broke.
- ``chaos inject``: one fault by hand.
- ``chaos bus-flood``: flood the node's bus with a stalled subscriber; exit 1 on a failed check.
- ``chaos partition``: local nodes split in two through the transport's partition fault, then
  healed (``kernel.cli.chaos.partition``); exit 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from kernel.cli.common import AdminArg, CliError

Verb = Callable[..., argparse.ArgumentParser]


class ChaosError(CliError):
    """A drill could not run; ``str()`` is one line (``ronctl`` prints it and exits 1)."""


FAULT_CHOICES = ("kill", "panic", "hang", "slow")


def _faults(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [f for f in items if f not in FAULT_CHOICES]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(FAULT_CHOICES)}, got {text!r}"
        )
    return items


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    return parse


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = units.get(t[-1:], 1) if t else 1
    digits = t[:-1] if t[-1:] in units else t
    try:
        value = int(float(digits) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size like 4MiB or 65536, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be >= 1 byte, got {text!r}")
    return value


def register(verb: Verb, admin_arg: AdminArg) -> None:
    p = verb(
        "chaos",
        "chaos drills: restart-storm, inject, bus-flood, partition",
        None,
        description="Drills that prove the node survives crashes, hangs and floods "
        "(see ops/runbooks/restart-storm.md).",
    )
    sub = p.add_subparsers(dest="chaos_verb", metavar="DRILL", required=True)

    s = sub.add_parser(
        "restart-storm",
        help="workload + random faults, then verify nothing acknowledged was lost",
        description="Run a gateway workload while injecting faults into random services, then "
        "verify every acknowledged write, restarts, quarantines, the admin plane, processes and "
        "readiness. Exit 0 when every check passed, 1 otherwise.",
    )
    where = s.add_mutually_exclusive_group()
    where.add_argument(
        "--profile", metavar="PROFILE", help="start a node (micronode, macronode or a TOML)"
    )
    admin_arg(where)
    s.add_argument("--config", metavar="FILE", type=Path, help="config for the node it starts")
    s.add_argument("--duration", type=_positive(float), default=20.0, metavar="S", help="(20)")
    s.add_argument(
        "--interval", type=_positive(float), default=1.0, metavar="S", help="between faults (1)"
    )
    s.add_argument(
        "--faults", type=_faults, default=("kill", "panic", "hang"), help="(kill,panic,hang)"
    )
    s.add_argument("--seed", type=int, default=1, help="fixes the fault schedule and workload (1)")
    s.add_argument("--rate", type=_positive(float), default=20.0, help="workload ops/s (20)")
    s.add_argument("--concurrency", type=_positive(int), default=16, help="requests in flight (16)")
    s.add_argument("--max-size", type=_size, default=4 * 1024**2, help="largest object (4MiB)")
    s.add_argument("--services", default="", help="comma-separated targets (default: all)")
    s.add_argument("--slow-delay-ms", type=int, default=200, help="delay of a slow fault (200)")
    s.add_argument("--slow-duration", type=float, default=2.0, help="how long slow lasts (2 s)")
    s.add_argument(
        "--ready-bound", type=_positive(float), default=30.0, help="ready again within (30 s)"
    )
    s.add_argument("--no-workload", action="store_true", help="faults and checks only")
    s.add_argument(
        "--keep-quarantined",
        action="store_true",
        help="do not release quarantines during the storm (they are released at its end)",
    )
    s.add_argument("--report", metavar="FILE", type=Path, help="write the JSON report here")
    s.add_argument("--plot", metavar="FILE.png", type=Path, help="draw the timeline here")
    s.add_argument("--node-log", metavar="FILE", type=Path, help="log of the node it starts")
    s.set_defaults(func=cmd_restart_storm)

    i = sub.add_parser(
        "inject",
        help="inject one fault into one service",
        description="kill = SIGKILL; panic = the service crashes from inside; hang = SIGSTOP "
        "(the supervisor replaces it after the heartbeat deadline); slow = delay every command.",
    )
    i.add_argument("--service", required=True, metavar="NAME", help="e.g. svc-storage")
    i.add_argument("--fault", required=True, choices=FAULT_CHOICES)
    i.add_argument("--delay-ms", type=int, default=200, help="slow: delay per command (200)")
    i.add_argument("--duration", type=float, default=2.0, help="slow: for how long (2 s)")
    admin_arg(i)
    i.set_defaults(func=cmd_inject)

    f = sub.add_parser(
        "bus-flood",
        help="flood the bus with a stalled subscriber; check nothing blocked and all is counted",
        description="Join the node's bus (same host), publish far beyond capacity while a "
        "subscriber is stalled, then check: no publish blocked, drops and lag counted, the "
        "supervisor's ConfigUpdated (from a config reload) still gets through.",
    )
    f.add_argument("--events", type=_positive(int), default=50_000, help="(50000)")
    f.add_argument("--report", metavar="FILE", type=Path, help="write the JSON result here")
    admin_arg(f)
    f.set_defaults(func=cmd_bus_flood)

    q = sub.add_parser(
        "partition",
        help="split local nodes in two, then heal; check fetches and DHT records",
        description="Start NODES micronodes joined through the DHT, split them into two groups "
        "(the first SPLIT nodes and the rest) with the transport's partition fault for "
        "DURATION s, then heal. Checks: during the split, fetches inside a group succeed and "
        "across it answer 503 (never 404); after the heal, fetches across succeed and "
        "ron_dht_missing_records returns to 0 within HEAL_BOUND s. Exit 0 when all passed.",
    )
    q.add_argument("--nodes", type=_positive(int), default=6, help="local nodes (6)")
    q.add_argument("--split", type=_positive(int), default=3, help="nodes in group A (3)")
    q.add_argument("--duration", type=_positive(float), default=30.0, help="split length (30 s)")
    q.add_argument("--heal-bound", type=_positive(float), default=60.0, help="(60 s)")
    q.add_argument("--report", metavar="FILE", type=Path, help="write the JSON report here")
    q.add_argument("--plot", metavar="FILE.png", type=Path, help="draw the probes here")
    q.add_argument("--logs", metavar="DIR", type=Path, help="keep the nodes' logs in DIR")
    q.add_argument("--json", action="store_true", help="print the JSON report, not the table")
    q.set_defaults(func=cmd_partition)


def cmd_inject(args: argparse.Namespace) -> int:
    from kernel.cli.common import control_client

    client = control_client(args)
    query = urllib.parse.urlencode(
        {"fault": args.fault, "delay_ms": args.delay_ms, "duration_s": args.duration}
    )
    service = urllib.parse.quote(args.service, safe="")
    resp = client.post(f"/fault/{service}?{query}")
    if resp.status == 200:
        body = resp.json()
        print(f"injected {args.fault} into {args.service} (pid {body.get('pid')})")
        return 0
    if resp.status == 404:
        raise ChaosError(f"unknown service: {args.service} (see `ronctl status`)")
    raise ChaosError(f"{args.fault} was not injected into {args.service} ({resp.error_text()})")


def cmd_restart_storm(args: argparse.Namespace) -> int:
    import trio

    from kernel.cli.chaos.http import HttpError
    from kernel.cli.chaos.plot import PlotUnavailable, require_matplotlib
    from kernel.cli.chaos.target import StartError
    from kernel.cli.common import resolve_admin_url, runtime_dir_of
    from kernel.cli.terminate import until_terminated

    if args.plot is not None:
        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            raise ChaosError(str(exc)) from None
    admin = None if args.profile else resolve_admin_url(args.admin, runtime_dir_of(args))
    try:
        report = trio.run(until_terminated, partial(_storm, args, admin))
    except (StartError, HttpError, ValueError) as exc:
        raise ChaosError(str(exc).splitlines()[0]) from None
    from kernel.cli.chaos.report import summary_table, write_report

    if args.report is not None:
        write_report(report, args.report)
    if args.plot is not None:
        from kernel.cli.chaos.plot import plot_timeline

        plot_timeline(report, args.plot)
    print(summary_table(report))
    return 0 if report["passed"] else 1


async def _storm(args: argparse.Namespace, admin: str | None) -> dict:
    from kernel.cli.chaos import target
    from kernel.cli.chaos.report import build_report
    from kernel.cli.chaos.storm import StormOptions, run_storm
    from kernel.cli.chaos.verify import after_stop_check, judge, read_back

    options = StormOptions(
        duration=args.duration,
        interval=args.interval,
        faults=args.faults,
        seed=args.seed,
        rate=args.rate,
        concurrency=int(args.concurrency),
        max_size=args.max_size,
        services=tuple(s for s in args.services.split(",") if s),
        slow_delay_ms=args.slow_delay_ms,
        slow_duration_s=args.slow_duration,
        ready_bound=args.ready_bound,
        workload=not args.no_workload,
        release_quarantined=not args.keep_quarantined,
    )
    if admin is not None:
        from kernel.cli.common import runtime_dir_of

        node = await target.attach(admin, runtime_dir_of(args))
        state = await run_storm(node, options)
        readback = await read_back(state.workload) if state.workload else None
        await _drain_mail(state)
        checks = judge(state, readback)
    else:
        async with target.start_node(
            args.profile, config=args.config, log_path=args.node_log
        ) as node:
            print(f"node started: {json.dumps(node.urls)} (log {node.log_path})", file=sys.stderr)
            state = await run_storm(node, options)
            readback = await read_back(state.workload) if state.workload else None
            await _drain_mail(state)
            checks = judge(state, readback)
        checks.append(after_stop_check(state, node.returncode))
    return build_report(state, checks, readback)


MAIL_DRAIN_S = 60.0  # seconds the drill gives the mailbox to deliver what it acknowledged


async def _drain_mail(state: Any) -> None:
    if state.mail is not None:
        state.mail_drained = await state.mail.drain(MAIL_DRAIN_S)


def cmd_partition(args: argparse.Namespace) -> int:
    import trio

    from kernel.cli.chaos.http import HttpError
    from kernel.cli.chaos.partition import PartitionOptions, run_partition
    from kernel.cli.chaos.plot import PlotUnavailable, require_matplotlib
    from kernel.cli.chaos.target import StartError
    from kernel.cli.terminate import until_terminated

    if args.plot is not None:
        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            raise ChaosError(str(exc)) from None
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    options = PartitionOptions(
        nodes=int(args.nodes),
        split=int(args.split),
        duration=args.duration,
        heal_bound=args.heal_bound,
        log_dir=args.logs,
    )
    try:
        report = trio.run(until_terminated, partial(run_partition, options))
    except (StartError, HttpError, ValueError) as exc:
        raise ChaosError(str(exc).splitlines()[0]) from None
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=1) + "\n")
    if args.plot is not None:
        from kernel.cli.chaos.partition_plot import plot_partition

        plot_partition(report, args.plot)
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0 if report["passed"] else 1
    for check in report["checks"]:
        print(f"{check['name']:44}  {'ok' if check['ok'] else 'FAIL':4}  {check['detail']}")
    print("PASSED" if report["passed"] else "FAILED")
    return 0 if report["passed"] else 1


def cmd_bus_flood(args: argparse.Namespace) -> int:
    import attrs
    import trio

    from kernel import runtime
    from kernel.cli.chaos.flood import FloodOptions, run_flood
    from kernel.cli.chaos.http import HttpError
    from kernel.cli.common import runtime_dir_of
    from kernel.cli.terminate import until_terminated

    runtime_dir = runtime_dir_of(args)
    admin = args.admin
    if admin is None:
        try:
            admin = runtime.read_node_info(runtime_dir).get("admin")
        except runtime.RuntimeDirError as exc:
            raise ChaosError(f"{exc}; pass --runtime-dir of the running node") from None
    options = FloodOptions(events=int(args.events))
    try:
        result = trio.run(until_terminated, partial(run_flood, Path(runtime_dir), admin, options))
    except (HttpError, TimeoutError, OSError) as exc:
        raise ChaosError(f"bus flood failed: {str(exc).splitlines()[0]}") from None
    doc = {"passed": result.passed, **attrs.asdict(result)}
    if args.report is not None:
        args.report.write_text(json.dumps(doc, indent=1) + "\n")
    for check in result.checks:
        print(f"{check['name']:32}  {'ok' if check['ok'] else 'FAIL':4}  {check['detail']}")
    print("PASSED" if result.passed else "FAILED")
    return 0 if result.passed else 1
