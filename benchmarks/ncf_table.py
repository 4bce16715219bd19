"""Markdown tables for the README from ``ncf_unlearn.py`` JSON results, with the verdicts.

    python benchmarks/ncf_table.py benchmarks/results/ncf_unlearn_*1m_*.json

One block of rows per result (the original model first), then one verdict line per result:
does ``alteraser`` close at least 90% of the gap, bring the MIA AUC within 0.02 of the
retrain's, take at most 1/10 of the retrain's time and at most 1/3 of the time fine-tuning
needs to reach the same (its per-epoch trace), with NDCG@10 within 1% of the retrain's?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ncf_unlearn import misses

ARCH_NAMES = {"gmf": "GMF", "mlp": "MLP", "neumf": "NeuMF"}
HEADER = ("data / model / scenario", "method", "seconds", "speed-up", "gap", "MIA AUC")
HEADER += ("NDCG@10 vs retrain",)


def _f(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def rows(result: dict[str, Any]) -> list[str]:
    arch = ARCH_NAMES.get(result["arch"], result["arch"])
    name = f"{result['dataset'].upper()} {arch} {result['scenario']}"
    out = []
    for k, row in enumerate([result["original"], *result["runs"]]):
        method = row["method"]
        if method == "original" and row.get("prepare_seconds") is not None:
            method = f"original (prepare {row['prepare_seconds']:.1f} s, once)"
        out.append(
            "| "
            + " | ".join(
                [
                    name if k == 0 else "",
                    f"**{method}**" if method == "alteraser" else method,
                    _f(row.get("seconds"), "{:.2f}"),
                    _f(row.get("speedup"), "{:.1f}"),
                    _f(row.get("gap_closed"), "{:.3f}"),
                    _f(row.get("mia_auc"), "{:.4f}"),
                    _f(row.get("ndcg_vs_retrain"), "{:+.2%}"),
                ]
            )
            + " |"
        )
    return out


def verdict(result: dict[str, Any]) -> str:
    runs = {r["method"]: r for r in result["runs"]}
    alt, rt = runs.get("alteraser"), runs.get("retrain")
    if alt is None or rt is None:
        return "no alteraser or retrain row"
    trace = result.get("finetune_trace") or {}
    reached = trace.get("reached")
    lrs = [t.get("lr") for t in result.get("finetune_traces", [trace])]
    at = f" at lr {trace['lr']:g}" if trace.get("lr") is not None else ""
    failed = misses(alt, result["original"], rt)
    if alt["seconds"] * 10 > rt["seconds"]:
        failed.append("1/10 retrain")
    if reached is not None and alt["seconds"] * 3 > reached["seconds"]:
        failed.append("1/3 fine-tune")
    ft = (
        f"fine-tune{at} reaches the target at epoch {reached['epoch']} "
        f"({reached['seconds']:.2f} s; "
        f"alteraser takes {alt['seconds'] / reached['seconds']:.2f} of that)"
        if reached
        else "fine-tune never reaches the target"
        + (f" (lr {', '.join(f'{x:g}' for x in lrs if x is not None)})" if any(lrs) else "")
    )
    head = "all criteria met" if not failed else "misses: " + ", ".join(failed)
    return f"{result['dataset']} {result['arch']} {result['scenario']}: {head}; {ft}."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    results = [json.loads(f.read_text()) for f in args.files]
    print(f"| {' | '.join(HEADER)} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print("\n".join(rows(r)))
    print()
    for r in results:
        print(f"- {verdict(r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
