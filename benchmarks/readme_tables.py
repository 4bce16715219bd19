"""Markdown summary tables for the README, from ``recforget bench`` JSON results.

    python benchmarks/readme_tables.py benchmarks/results/bench_ml-1m_*.json

Prints one row per result: the scenario, the retrain's seconds, each certified method's seconds
with its speed-up and gap closed, and the membership-inference AUCs (original / retrain /
unlearn-als) of whichever attack the scenario allows. The tables in the README's results
section are these rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

METHODS = ("unlearn-als", "unlearn-als-selective")


def _runs(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["method"]: run for run in result["runs"]}


def _method_cell(run: dict[str, Any] | None) -> str:
    if run is None:
        return "–"
    cell = f"{run['seconds']:.2f} s ({run['speedup']:.0f}×"
    if run.get("gap_closed") is not None:
        cell += f", {run['gap_closed']:.2f}"
    return cell + ")"


def _attack_cell(result: dict[str, Any]) -> str:
    rows = [result["original"], *(_runs(result).get(m) for m in ("retrain", "unlearn-als"))]
    for kind, label in (("interaction", "pairs"), ("user", "users")):
        aucs = [((r or {}).get("attack") or {}).get(kind) for r in rows]
        if all(a is not None for a in aucs):
            return f"{label}: " + " / ".join(f"{a['auc']:.3f}" for a in aucs)
    return "–"


def summary_row(result: dict[str, Any]) -> str:
    """One Markdown table row for a bench result."""
    runs = _runs(result)
    retrain = runs.get("retrain")
    cells = [
        f"`{result['scenario']}`",
        f"{retrain['seconds']:.1f} s" if retrain else "–",
        *(_method_cell(runs.get(m)) for m in METHODS),
        _attack_cell(result),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| scenario | retrain | unlearn-als (speed-up, gap closed) | selective (speed-up, gap "
    "closed) | MIA AUC: original / retrain / unlearn-als |\n|---|---:|---:|---:|---|"
)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path)
    args = p.parse_args(argv)
    lines = [HEADER]
    for path in args.results:
        result = json.loads(path.read_text())
        if "runs" not in result:  # presets and multi-seed results have their own reports
            continue
        lines.append(summary_row(result))
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
