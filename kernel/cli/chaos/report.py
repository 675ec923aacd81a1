"""The drill's results: the JSON report (``--report FILE``) and the short summary table (stdout).

The JSON document is for machines and post-mortems: options, what was injected and seen, the
checks, and the raw timeline (the plot is drawn from it). ``passed`` is true only when every
check passed; the exit code of ``ronctl chaos restart-storm`` follows it.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import attrs

from ipc.plain import JsonObject
from kernel.cli.chaos.storm import StormState
from kernel.cli.chaos.verify import Check, ReadBack, percentile

__all__ = ["build_report", "summary_table", "write_report"]

REPORT_VERSION = 1


def build_report(state: StormState, checks: list[Check], readback: ReadBack | None) -> dict:
    opts = state.options
    landed = [f for f in state.faults if f.outcome == "landed"]
    wl = state.workload
    report: JsonObject = {
        "report_version": REPORT_VERSION,
        "passed": all(c.ok for c in checks),
        "node": {"profile": state.node.profile, "admin": state.node.admin, "pid": state.node.pid},
        "options": attrs.asdict(opts),
        "policy": state.policy,
        "faults": {
            "planned": len(state.plan),
            "landed": len(landed),
            "by_kind": dict(collections.Counter(f.fault for f in landed)),
            "skipped": len(state.faults) - len(landed),
        },
        "crashes": len(state.crashes),
        "quarantines": state.model.summary(),
        "restarts": {
            name: state.restarts_after.get(name, 0.0) - state.restarts_before.get(name, 0.0)
            for name in sorted(set(state.restarts_after) | set(state.restarts_before))
        },
        "healthz": {
            "probes": len(state.healthz),
            "failed": sum(1 for _, _, ok in state.healthz if not ok),
            "p50_s": percentile([lat for _, lat, ok in state.healthz if ok], 0.5),
            "p99_s": percentile([lat for _, lat, ok in state.healthz if ok], 0.99),
        },
        "supervisor_rss": {"before": state.rss_before, "after": state.rss_after},
        "ready_after_s": state.ready_after,
        "checks": [attrs.asdict(c) for c in checks],
        "timeline": {
            "faults": [attrs.asdict(f) for f in state.faults],
            "crashes": state.crashes,
            "quarantines": state.quarantines,
            "releases": state.releases,
            "readiness": state.readiness,
            "storm_end": state.storm_end,
        },
    }
    if wl is not None:
        c = wl.counts
        lat = [s.latency for s in wl.samples if s.ok and s.op == "put"]
        report["workload"] = {
            "issued": wl.issued,
            "ok": c.ok,
            "rejected": c.rejected,
            "failed": c.failed,
            "failures": c.failures,
            "shed": c.shed,
            "skipped": c.skipped,
            "missing_during_storm": c.missing_during_storm,
            "put_p50_s": percentile(lat, 0.5),
            "put_p99_s": percentile(lat, 0.99),
            "bytes_acked": sum(o.size for o in wl.ledger.objects.values()),
        }
        report["timeline"]["requests"] = [
            (round(s.t, 4), s.op, round(s.latency, 5), s.ok) for s in wl.samples
        ]
    if readback is not None:
        report["readback"] = attrs.asdict(readback)
    if state.mail is not None:
        led = state.mail.ledger
        report["mail"] = {
            "acked_sends": len(led.acked_sends),
            "acked": len(led.acked),
            "ack_unknown": len(led.ack_unknown),
            "redelivered": led.redelivered,
            "came_back": len(led.came_back),
            "lost": led.lost(),
            "unsettled": led.unsettled(),
            "send_failures": led.send_failures,
            "ack_failures": led.ack_failures,
            "dead_lettered": led.dead_lettered,
            "drained": state.mail_drained,
        }
    return report


def write_report(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")


def summary_table(report: dict) -> str:
    """A few lines for a terminal: what ran, then one line per check."""
    f = report["faults"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(f["by_kind"].items())) or "none"
    opts = report["options"]
    lines = [
        f"restart storm on {report['node']['profile']}: {opts['duration']:g} s, fault every "
        f"{opts['interval']:g} s, seed {opts['seed']}",
        f"faults landed {f['landed']}/{f['planned']} ({kinds}); crashes seen {report['crashes']}",
    ]
    wl = report.get("workload")
    if wl:
        p99 = wl["put_p99_s"]
        lines.append(
            f"workload: {wl['issued']} ops; acked {wl['ok']['put']} objects "
            f"({wl['bytes_acked'] / 2**20:.1f} MiB), {wl['ok']['name']} name updates, "
            f"{wl['ok']['get']} reads; errors {sum(wl['failed'].values())}; PUT p99 "
            + ("-" if p99 is None else f"{p99 * 1000:.0f} ms")
        )
    rows = [("CHECK", "RESULT", "DETAIL")] + [
        (c["name"], "ok" if c["ok"] else "FAIL", c["detail"]) for c in report["checks"]
    ]
    w0 = max(len(r[0]) for r in rows)
    lines += [f"{r[0].ljust(w0)}  {r[1].ljust(6)}  {r[2]}" for r in rows]
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)
