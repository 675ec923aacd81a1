"""The partition drill's picture (``--plot FILE.png``), drawn from its JSON report: every GET
probe on one time axis (seconds since the split; inside a group / across it; 200, 503, 404 or
no answer) above the missing-records samples, the split shaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernel.cli.chaos.plot import require_matplotlib

__all__ = ["plot_partition"]

ROWS = {200: 3, 503: 2, 404: 1}  # anything else (no answer, wrong bytes, other): row 0


def plot_partition(report: dict[str, Any], path: Path) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_m) = plt.subplots(2, 1, sharex=True, figsize=(12, 7), height_ratios=[3, 2])
    for ax in (ax_p, ax_m):
        ax.axvspan(0, report["heal_at"], color="0.9", label="split")
    for same, color, label in ((True, "tab:green", "inside a group"), (False, "tab:red", "across")):
        pts = [
            (p["t"], ROWS.get(p["status"], 0)) for p in report["probes"] if p["same_group"] == same
        ]
        if pts:
            ax_p.scatter(*zip(*pts, strict=True), s=14, color=color, alpha=0.6, label=label)
    ax_p.set_yticks([0, 1, 2, 3], ["other", "404", "503", "200"])
    ax_p.set_ylabel("GET answered")
    ax_p.legend(loc="upper right")
    ax_p.set_title("partition drill: " + ("PASSED" if report["passed"] else "FAILED"))
    totals: dict[float, float] = {}
    for sample in report["missing"]:
        totals[sample["t"]] = totals.get(sample["t"], 0.0) + sample["value"]
    if totals:
        ts = sorted(totals)
        ax_m.step(ts, [totals[t] for t in ts], where="post", color="tab:orange")
    ax_m.set_ylabel("ron_dht_missing_records\n(sum over nodes)")
    ax_m.set_xlabel("seconds since the split")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
