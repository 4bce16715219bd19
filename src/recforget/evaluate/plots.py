"""PNG plots of bench results with matplotlib (the optional ``bench`` extra, Agg backend).

:func:`write_plots` draws what a result holds:

* ``objective_vs_time.png``: each model's objective after every sweep against time (the
  runs' ``loss_curve``; a sweep's time is the run's seconds over its sweeps, an even split);
* ``residual_vs_seconds.png``: each method's final stationarity residual against its time;
* ``accuracy_vs_seconds.png``: ndcg@10 (presets: test AUC) against time;
* ``attack_auc.png``: membership-inference AUC of the original, retrained and unlearned models;
* ``stream.png``: gap closed and ndcg@10 at each checkpoint of a stream scenario.

matplotlib is imported only when plotting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recforget.evaluate.report import get_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(result: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write the plots of a bench, preset or several-seed result into ``folder``.

    Several seeds get one set per seed, named ``seed<k>_<plot>.png``; a preset one set per
    scenario, named ``<scenario>_<plot>.png``.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if "results" in result:
        return [p for r in result["results"] for p in _one(r, folder, f"seed{r['seed']}_")]
    return _one(result, folder, "")


def _one(result: dict[str, Any], folder: Path, prefix: str) -> list[Path]:
    if "scenarios" in result:
        out = []
        for sc in result["scenarios"]:
            rows = [sc["original"], *sc["runs"]]
            tag = f"{prefix}{sc['scenario'].replace(':', '-')}_"
            out += _common(rows, sc["runs"], folder, tag, accuracy="auc")
        return out
    rows = [result["original"], *result["runs"]]
    out = _common(rows, result["runs"], folder, prefix, accuracy="metrics.ndcg@10")
    out += _attack(rows, folder / f"{prefix}attack_auc.png")
    if result.get("stream"):
        out.append(_stream(result["stream"], folder / f"{prefix}stream.png"))
    return out


def _common(rows, runs, folder: Path, prefix: str, accuracy: str) -> list[Path]:
    out = []
    if any(r.get("loss_curve") for r in runs):
        out.append(_curves(runs, folder / f"{prefix}objective_vs_time.png"))
    if any(r.get("residual") is not None for r in runs):
        out.append(
            _scatter(runs, "residual", folder / f"{prefix}residual_vs_seconds.png", log_y=True)
        )
    if any(get_path(r, accuracy) is not None for r in runs):
        out.append(_scatter(runs, accuracy, folder / f"{prefix}accuracy_vs_seconds.png"))
    return out


def _curves(runs, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        curve = run.get("loss_curve") or []
        if not curve:
            continue
        step = run["seconds"] / len(curve)
        ax.plot([step * (j + 1) for j in range(len(curve))], curve, marker=".", label=run["method"])
    ax.set_xlabel("seconds (sweeps spread evenly)")
    ax.set_ylabel("objective on the remaining data")
    ax.set_yscale("log")
    ax.legend()
    return _save(fig, plt, path)


def _scatter(runs, field: str, path: Path, log_y: bool = False) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        y = get_path(run, field)
        if y is not None and run.get("seconds") is not None:
            ax.scatter(run["seconds"], y, s=40)
            ax.annotate(run["method"], (run["seconds"], y), fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_xscale("log")
    ax.set_ylabel(field.split(".")[-1])
    if log_y:
        ax.set_yscale("log")
    return _save(fig, plt, path)


def _attack(rows, path: Path) -> list[Path]:
    kinds = [
        k for k in ("interaction", "user") if any(get_path(r, f"attack.{k}.auc") for r in rows)
    ]
    if not kinds:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        values = [get_path(r, f"attack.{kind}.auc") or 0.0 for r in rows]
        xs = [i + j * width for i in range(len(rows))]
        ax.bar(xs, values, width=width, label=f"{kind}-level")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([r["method"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("membership-inference AUC")
    ax.set_ylim(0, 1)
    ax.legend()
    return [_save(fig, plt, path)]


def _stream(stream: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [cp["step"] for cp in stream["checkpoints"]]
    methods = list(stream["checkpoints"][0]["methods"]) if steps else []
    for m in methods:
        cps = [cp["methods"][m] for cp in stream["checkpoints"]]
        ax1.plot(steps, [c["gap_closed"] for c in cps], marker="o", label=m)
        ax2.plot(steps, [c["metrics"].get("ndcg@10") for c in cps], marker="o", label=m)
    ax1.set_xlabel("request")
    ax1.set_ylabel("gap closed")
    ax2.set_xlabel("request")
    ax2.set_ylabel("ndcg@10")
    ax1.legend()
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["write_plots"]
