"""The drill's timeline picture (``--plot FILE.png``), drawn from the JSON report.

Four panels on one time axis (seconds since the storm started): faults injected per service (one
marker per kind) with the crashes they caused; restarts seen (cumulative); node readiness; request
latency (PUT/GET/name; failures in red). matplotlib is optional: ``pip install rustyonions[plot]``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PlotUnavailable", "plot_timeline", "require_matplotlib"]

MARKERS = {"kill": "x", "panic": "*", "hang": "s", "slow": "v"}


class PlotUnavailable(Exception):
    """matplotlib is not installed; ``str()`` tells the user what to install."""


def require_matplotlib() -> None:
    """Fail early (before a long drill) when a plot is asked for and cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: install rustyonions[plot] (pip install 'rustyonions[plot]')"
        ) from None


def plot_timeline(report: dict, path: Path) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    tl = report["timeline"]
    faults = [f for f in tl["faults"] if f["outcome"] == "landed"]
    services = sorted({f["service"] for f in tl["faults"]} | {c[1] for c in tl["crashes"]})
    row = {name: i for i, name in enumerate(services)}
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(12, 9), height_ratios=[3, 1.5, 1, 3])
    ax_f, ax_r, ax_ready, ax_lat = axes

    for kind, marker in MARKERS.items():
        pts = [(f["t"], row[f["service"]]) for f in faults if f["fault"] == kind]
        if pts:
            ax_f.scatter(*zip(*pts, strict=True), marker=marker, s=40, label=f"{kind} injected")
    crashes = [(t, row[s]) for t, s, _ in tl["crashes"] if s in row]
    if crashes:
        ax_f.scatter(
            *zip(*crashes, strict=True),
            marker="o",
            s=70,
            facecolors="none",
            edgecolors="k",
            label="crash seen",
        )
    for t, s in tl["quarantines"]:
        ax_f.annotate("Q", (t, row.get(s, 0)), color="red", fontweight="bold")
    ax_f.set_yticks(range(len(services)), services)
    ax_f.set_title(
        f"restart storm on {report['node']['profile']} (seed {report['options']['seed']}): "
        + ("PASSED" if report["passed"] else "FAILED")
    )
    ax_f.legend(loc="upper right", fontsize=7, ncol=3)

    times = sorted(t for t, _, _ in tl["crashes"])
    ax_r.step([0.0, *times], range(len(times) + 1), where="post")
    ax_r.set_ylabel("restarts\n(cumulative)")

    ready = tl["readiness"] or [(0.0, True)]
    end = max(tl.get("storm_end") or 0.0, ready[-1][0]) + 1
    xs = [t for t, _ in ready] + [end]
    ys = [1 if r else 0 for _, r in ready] + [1 if ready[-1][1] else 0]
    ax_ready.step(xs, ys, where="post", color="green")
    ax_ready.set_yticks([0, 1], ["not ready", "ready"])
    if tl.get("storm_end"):
        for ax in axes:
            ax.axvline(tl["storm_end"], color="grey", linestyle="--", linewidth=0.8)

    requests = tl.get("requests") or []
    for op, color in (("put", "tab:blue"), ("get", "tab:green"), ("name", "tab:purple")):
        pts = [(t, lat * 1000) for t, o, lat, ok in requests if o == op and ok]
        if pts:
            ax_lat.scatter(*zip(*pts, strict=True), s=4, color=color, label=f"{op} ok")
    bad = [(t, lat * 1000) for t, _, lat, ok in requests if not ok]
    if bad:
        ax_lat.scatter(*zip(*bad, strict=True), s=8, color="red", marker="x", label="failed")
    if requests:
        ax_lat.set_yscale("log")
        ax_lat.legend(loc="upper right", fontsize=7)
    else:
        ax_lat.text(0.5, 0.5, "no workload", ha="center", transform=ax_lat.transAxes)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("seconds since the storm started (dashed: storm end)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
