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


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def floor_lines(report: dict) -> list[str]:
    """Per scenario: the floor, the retention with its 95% interval, edge share, savings, verdict."""
    floors = report.get("floors") or {}
    if not floors:
        return []
    lines = ["", f"floors (retention = quality / all-cloud {report['all_cloud_model']}'s; reductions vs all-cloud)",
             f"{'scenario':<13}{'floor%':>8}{'retain%':>9}{'95% CI':>15}{'edge%':>8}{'lat-red%':>10}"
             f"{'E-red%':>8}{'cost-red%':>11}  verdict (calibration)"]
    for name, f in floors.items():
        low, high = f["retention_ci95"]
        lines.append(f"{name:<13}{_pct(f['floor']):>8}{_pct(f['retention']):>9}"
                     f"{f'[{_pct(low)}, {_pct(high)}]':>15}{_pct(f['edge_share']):>8}{_pct(f['latency_reduction']):>10}"
                     f"{_pct(f['energy_reduction']):>8}{_pct(f['cost_reduction']):>11}  {f['verdict']}"
                     f" ({f['status'] or 'fixed tau'})")
    return lines


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curve_plot(report: dict, path: str | Path, *, scenario: str = "quality", title: str = "") -> Path:
    """Retention vs edge share of the router and the baselines under one scenario, with every preset's point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = {"mlp": ("k", "-", 2.2), "oracle": ("0.6", ":", 1.2), "random": ("0.45", "--", 1.2)}
    for name, points in report["curves"][scenario].items():
        color, line, width = styles.get(name, (None, "-", 1.2))
        label = {"mlp": f"mlp (router, {scenario} weights)", "random": "random at matched share",
                 "oracle": "oracle (realised gain)"}.get(name, name)
        ax.plot([p[0] for p in points], [p[1] for p in points], line, color=color, lw=width, label=label)
    marks = iter([("tab:red", "*"), ("tab:purple", "P"), ("tab:brown", "X"), ("tab:pink", "D")])
    for name, f in report.get("floors", {}).items():
        color, marker = next(marks, ("k", "o"))
        ax.scatter([f["edge_share"]], [f["retention"]], marker=marker, s=150, zorder=4, color=color,
                   edgecolors="white", label=f"{name}: floor {f['floor']:.0%}, retention {f['retention']:.1%}, "
                                          f"{f['verdict']}")
        ax.axhline(f["floor"], color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("edge share")
    ax.set_ylabel(f"quality retention (vs all-cloud {report['all_cloud_model']})")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or f"quality vs edge share ({report['split']} split, n={report['n']})")
    return _save(fig, path)


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
    lines.extend(floor_lines(report))
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
    return _save(fig, path)
