"""Printing the evaluation table and drawing the Pareto plot."""

from __future__ import annotations

from pathlib import Path

ORDER = ("mlp", "oracle", "random", "knn", "linear", "signals", "always_edge", "always_cloud")
COLUMNS = (("edge_share", "edge%", 100), ("quality", "quality", 1), ("quality_retention", "retain%", 100),
           ("latency_reduction", "lat-red%", 100), ("energy_reduction", "E-red%", 100), ("cost", "cost$", 1),
           ("rank_score", "rank", 1), ("rcs", "RCS", 1), ("utility", "U", 1))


def _fmt(value, scale) -> str:
    if value is None:
        return "-"
    if scale == 1 and abs(value) < 0.01 and value != 0:
        return f"{value:.2e}"
    return f"{value * scale:.1f}" if scale == 100 else f"{value:.3f}"


def _paired_lines(paired: dict) -> list[str]:
    """mlp minus each baseline in utility, with the 95% interval of the paired difference."""
    lines = []
    for kind, label in (("realised", "U"), ("expected", "E[U]")):
        parts = [f"{name} {g[kind]['diff']:+.3f} [{g[kind]['ci95'][0]:+.3f}, {g[kind]['ci95'][1]:+.3f}]"
                 for name, g in paired.items() if kind in g and name in ORDER]
        line = f"  mlp - baseline, {label} (95% CI):"
        for k, part in enumerate(parts):  # wrap between entries, never inside one
            if len(line) + len(part) > 110 and k:
                lines.append(line + ";")
                line = "     "
            line += (" " if not k or line.strip() == "" else "; ") + part
        if parts:
            lines.append(line)
    return lines


def format_table(report: dict) -> str:
    lines = [f"split={report['split']} n={report['n']} all-cloud={report['all_cloud_model']}"]
    for scenario, rows in report["scenarios"].items():
        columns = COLUMNS + ((("expected_utility", "E[U]", 1),) if "expected_utility" in rows["mlp"] else ())
        lines.append(f"\n[{scenario}]")
        lines.append(f"{'policy':<13}" + "".join(f"{label:>10}" for _, label, _ in columns))
        for name in ORDER:
            if name in rows:
                lines.append(f"{name:<13}" + "".join(f"{_fmt(rows[name].get(k), s):>10}" for k, _, s in columns))
        lines.extend(_paired_lines(report.get("paired", {}).get(scenario, {})))
    if any("expected_utility" in rows["mlp"] for rows in report["scenarios"].values()):
        lines.append("\nE[U]: the same utility with the simulator's P(correct) in place of the 0/1 outcome "
                     "(synthetic data only; free of outcome noise)")
    return "\n".join(lines)


def pareto_plot(report: dict, curve: list[dict], path: str | Path, *, scenario: str = "quality",
                title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["scenarios"][scenario]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, label in ((axes[0], "energy", "mean energy per query"), (axes[1], "latency",
                                                                           "mean latency per query")):
        ax.plot([p[key] for p in curve], [p["quality"] for p in curve], "-o", ms=3, label="mlp (tau sweep)")
        for name in ORDER:
            if name in rows and name != "mlp":
                x = rows[name].get(f"mean_{key}")
                if x is not None:
                    ax.scatter([x], [rows[name]["quality"]], label=name, zorder=3)
        if rows["mlp"].get(f"mean_{key}") is not None:
            ax.scatter([rows["mlp"][f"mean_{key}"]], [rows["mlp"]["quality"]], marker="*", s=200, c="k",
                       label=f"mlp (calibrated tau, {scenario})", zorder=4)
        ax.set_xlabel(label)
        ax.set_ylabel("quality")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or f"quality vs energy and latency ({scenario} scenario, {report['split']} split)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
