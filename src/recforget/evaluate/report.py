"""Bench results as tables and Markdown, and their summary over several seeds.

JSON schema
-----------
:func:`recforget.evaluate.bench.run_bench` returns (and ``recforget bench --json`` writes)::

    {
      "dataset": str, "model": str, "scenario": str, "seed": int, "compile_seconds": float,
      "params": {model parameter: value},
      "data": {"n_users", "n_items", "train", "test"},          # counts
      "request": {"pairs", "users", "items"[, "item_groups"]},  # "genres" | "random"
      "evaluation": {                    # who every row's "metrics" were judged on
        "requested": int | null,         # --eval-users (null: all)
        "users", "of": int,              # users evaluated, of the test users
        "sampled": bool, "seed": int,    # the sample's seed (seed + 5)
        "fingerprint": str               # sampled only: sha256 over the sampled ids
      },
      "original": ROW,                                          # the untouched model
      "runs": [ROW, ...],                                       # one per method
      "extras": null | {
        "seconds": float,                                       # time spent on the extras
        "caps": {"heldout_pairs", "deleted_pairs", "users", "mia_users", "shadow_users"},
        "k": 10, "neighbours": 200,
        "samples": {"heldout_pairs", "deleted_pairs", "non_member_pairs", "users"},
        "reserved_users": int,            # users held out of training as MIA non-members
        "notes": {"consistency", "interaction_mia", "user_mia"}  # null, or why it is missing
      },
      "lira": null | LIRA,                                      # --lira K only
      "stream": {                                               # stream:N[:size] only
        "n_requests": N,
        "checkpoints": [{"step", "pairs", "original_deleted_score",
                         "methods": {method: {"seconds", "cumulative_seconds", "residual",
                                              "certified", "sweeps", "deleted_mean_score",
                                              "gap_closed", "metrics"}}}]
      }
    }

    ROW = {
      "method": str,                     # "original" for the untouched model
      "seconds": float,                  # runs only (the original has "fit_seconds" and, for
                                         # a neural model, AltEraser's "prepare_seconds")
      "speedup", "sweeps", "rows_solved", "certified", "gap_closed",   # runs only
      "residual": float,                 # max relative row gradient, retraining objective
      "objective": float,
      "deleted_mean_score": float | null,
      "metrics": {"recall@10", "precision@10", "ndcg@10", "hr@10", "map@10", "mrr", "auc",
                  "n_users"},
      "loss_curve": [float, ...],        # only when the model tracked its objective
      "consistency": null | {            # against the "retrain" run
        "heldout": AGREEMENT, "deleted": AGREEMENT | null,
        "topk_jaccard@10": float, "neighbour_jaccard@200": float,
        "deleted_ranks": {"mean_rank", "median_rank", "top@10", "n"} | null
      },
      "attack": null | {
        "interaction": {"auc", "n_members", "n_non_members"} | null,
        "user": {"auc", "shadow_auc", "n_members", "n_non_members", "n_shadow_members",
                 "n_shadow_non_members"} | null
      }
    }

    AGREEMENT = {"pearson", "spearman", "kendall_tau", "mean_abs_gap"}

    LIRA = {                             # recforget.evaluate.lira_bench.run_lira
      "attack": "lira", "level": "interaction" | "user",
      "n_shadows": K, "transform": str, "variance": "global" | "per-pair",
      "shadow_seconds", "attack_seconds": float,
      "n_members", "n_non_members": int,            # deleted pairs/users; non-members
      "second_seed": int,                           # seed of "retrain-seed2"
      "timing": {"retrain"?, "retrain-seed2": float},   # fits made for the attack
      "rows": {label: {variant: METRICS}},          # "original", "retrain", "retrain-seed2",
                                                    # then every method
      "verdict": {"separates": {variant: {metric: bool | null}},
                  "inside_retrain_interval": {method: {variant: {metric: bool}}}}
    }
    # variant: "online", "offline" (LiRA), "score" (uncalibrated threshold); users on ALS
    # also "fold-in online", "fold-in offline", "fold-in score"
    METRICS = {"auc", "tpr@0.1%fpr", "tpr@1%fpr", "<metric>_ci": [low, high] | null,
               "n_members", "n_non_members", "n_bootstrap"}

Non-finite numbers are written as ``null``. With several seeds (``--seeds``) the CLI writes
``{"seeds": [...], "results": [RESULT, ...], "summary": SUMMARY}`` where :func:`aggregate` gives
``SUMMARY = {"n_results", "seeds", "methods": {label: {field: {"mean", "std", "n"}}}}``;
``field`` is a dotted path to a number of a row (``"metrics.ndcg@10"``,
``"attack.interaction.auc"``), ``label`` the method (``"original"`` included), prefixed by the
scenario for presets (``"interactions:0.1/retrain"``). ``std`` is the sample standard
deviation (``ddof=1``; ``null`` for a single value); booleans count as 0/1.

The ``netflix-forget`` preset result (:func:`recforget.evaluate.presets.netflix_forget`) is
``{"preset", "dataset", "model", "seed", "params", "data", "original": {"fit_seconds", "auc",
"loss_curve"}, "scenarios": [{"scenario", "request": {"pairs"}, "original": {"method", "auc",
"mse_vs_retrain", "mse_vs_zero", "neighbour_jaccard@200"}, "runs": [{"method", "seconds",
"speedup", "sweeps", "residual", "certified", "objective", "auc", "mse_vs_retrain",
"mse_vs_zero", "neighbour_jaccard@200", "loss_curve"}]}]}``: ``auc`` on the held-out positives
against as many sampled negatives, ``mse_vs_retrain`` and ``mse_vs_zero`` on the removed cells,
``loss_curve`` the objective after each sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONSISTENCY_COLUMNS = [
    "method",
    "heldout_r",
    "heldout_tau",
    "heldout_gap",
    "deleted_r",
    "deleted_gap",
    "top10_jaccard",
    "nbr200_jaccard",
    "deleted_rank",
    "deleted_top10",
]
LIRA_COLUMNS = ["model", "attack", "auc", "tpr@0.1%fpr", "tpr@1%fpr"]
ATTACK_COLUMNS = ["method", "interaction_auc", "members", "user_auc", "users_in", "users_out"]
PARTITION_COLUMNS = [
    "method",
    "shards",
    "partition",
    "retrained",
    "fit_seconds",
    "seconds",
    "ndcg@10_before",
    "ndcg@10",
]
STREAM_COLUMNS = ["step", "pairs", "method", "seconds", "cumulative", "gap_closed", "ndcg@10"]
PRESET_COLUMNS = [
    "scenario",
    "method",
    "seconds",
    "speedup",
    "sweeps",
    "residual",
    "auc",
    "mse_vs_retrain",
    "mse_vs_zero",
    "nbr200_jaccard",
]
SUMMARY_FIELDS = [
    "seconds",
    "speedup",
    "gap_closed",
    "metrics.ndcg@10",
    "auc",
    "mse_vs_retrain",
    "consistency.topk_jaccard@10",
    "attack.interaction.auc",
    "attack.user.auc",
]


# ---------------------------------------------------------------------- rows
def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [result["original"], *result["runs"]]


def get_path(d: Any, path: str) -> Any:
    """``d["a"]["b"]`` for ``path="a.b"``; ``None`` where a level is missing or not a dict."""
    for key in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def consistency_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model (original first) of the consistency with the retrained oracle."""
    out = []
    for row in _rows(result):
        c = row.get("consistency")
        if not c:
            continue
        out.append(
            {
                "method": row["method"],
                "heldout_r": get_path(c, "heldout.pearson"),
                "heldout_tau": get_path(c, "heldout.kendall_tau"),
                "heldout_gap": get_path(c, "heldout.mean_abs_gap"),
                "deleted_r": get_path(c, "deleted.pearson"),
                "deleted_gap": get_path(c, "deleted.mean_abs_gap"),
                "top10_jaccard": c.get("topk_jaccard@10"),
                "nbr200_jaccard": c.get("neighbour_jaccard@200"),
                "deleted_rank": get_path(c, "deleted_ranks.mean_rank"),
                "deleted_top10": get_path(c, "deleted_ranks.top@10"),
            }
        )
    return out


def attack_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model of the membership-inference AUCs (0.5: no better than chance)."""
    out = []
    for row in _rows(result):
        a = row.get("attack")
        if not a or (a.get("interaction") is None and a.get("user") is None):
            continue
        out.append(
            {
                "method": row["method"],
                "interaction_auc": get_path(a, "interaction.auc"),
                "members": get_path(a, "interaction.n_members"),
                "user_auc": get_path(a, "user.auc"),
                "users_in": get_path(a, "user.n_members"),
                "users_out": get_path(a, "user.n_non_members"),
            }
        )
    return out


def partition_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per partition baseline: its shards, fit, forget and accuracy before/after."""
    out = []
    for run in result.get("runs", []):
        if "shards" not in run:
            continue
        out.append(
            {
                "method": run["method"],
                "shards": run["shards"],
                "partition": run["partition"],
                "retrained": len(run["shards_retrained"]),
                "fit_seconds": run["fit_seconds"],
                "seconds": run["seconds"],
                "ndcg@10_before": (run.get("metrics_before") or {}).get("ndcg@10"),
                "ndcg@10": run["metrics"].get("ndcg@10"),
            }
        )
    return out


def lira_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model and LiRA variant: each metric with its 95% interval (``lira`` runs)."""
    lira = result.get("lira")
    if not lira:
        return []
    out = []
    for label, row in lira["rows"].items():
        for variant, m in row.items():
            cells: dict[str, Any] = {"model": label, "attack": variant}
            for key in LIRA_COLUMNS[2:]:
                ci = m.get(f"{key}_ci")
                cells[key] = f"{m[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            out.append(cells)
    return out


def stream_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (checkpoint, method) of a stream scenario."""
    out = []
    for cp in (result.get("stream") or {}).get("checkpoints", []):
        for method, m in cp["methods"].items():
            out.append(
                {
                    "step": cp["step"],
                    "pairs": cp["pairs"],
                    "method": method,
                    "seconds": m["seconds"],
                    "cumulative": m["cumulative_seconds"],
                    "gap_closed": m["gap_closed"],
                    "ndcg@10": m["metrics"].get("ndcg@10"),
                }
            )
    return out


def preset_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (scenario, model) of a preset result, the original first."""
    out = []
    for sc in result["scenarios"]:
        for row in [sc["original"], *sc["runs"]]:
            out.append(
                {
                    "scenario": sc["scenario"],
                    **row,
                    "nbr200_jaccard": row.get("neighbour_jaccard@200"),
                    "residual": _sci(row.get("residual")),
                }
            )
    return out


def summary_rows(summary: dict[str, Any], fields: Sequence[str] = SUMMARY_FIELDS) -> tuple:
    """Rows ``method, field: "mean ± std"`` of :func:`aggregate`'s output, and their columns."""
    present = [f for f in fields if any(f in v for v in summary["methods"].values())]
    rows = []
    for label, stats in summary["methods"].items():
        row: dict[str, Any] = {"method": label}
        for f in present:
            s = stats.get(f)
            if s is not None and s["mean"] is not None:
                std = "" if s["std"] is None else f" ± {s['std']:.3g}"
                row[f] = f"{s['mean']:.4g}{std}"
        rows.append(row)
    return rows, ["method", *present]


def _sci(v: Any) -> Any:
    return f"{v:.2e}" if isinstance(v, float) else v


# ---------------------------------------------------------------------- seeds
def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of every numeric row field, per method.

    Parameters
    ----------
    results : sequence of bench or preset results
        Typically the same configuration under several seeds.

    Returns
    -------
    dict
        ``{"n_results", "seeds", "methods": {label: {field: {"mean", "std", "n"}}}}`` (see
        the module docstring); ``None`` values are left out of a field's statistics.
    """
    values: dict[str, dict[str, list[float]]] = {}
    for result in results:
        for label, row in _labelled_rows(result):
            bucket = values.setdefault(label, {})
            for path, v in _numbers(row):
                bucket.setdefault(path, []).append(v)
    methods = {
        label: {path: _stats(vs) for path, vs in fields.items()} for label, fields in values.items()
    }
    return {
        "n_results": len(results),
        "seeds": [r.get("seed") for r in results],
        "methods": methods,
    }


def _labelled_rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if "scenarios" in result:
        return [
            (f"{sc['scenario']}/{row['method']}", row)
            for sc in result["scenarios"]
            for row in [sc["original"], *sc["runs"]]
        ]
    return [(row["method"], row) for row in _rows(result)]


def _numbers(d: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """``(dotted path, value)`` of every number (bools as 0/1) nested in ``d``; lists skipped."""
    out = []
    for key, v in d.items():
        path = f"{prefix}{key}"
        if isinstance(v, dict):
            out += _numbers(v, path + ".")
        elif isinstance(v, (bool, int, float, np.number)) and np.isfinite(float(v)):
            out.append((path, float(v)))
    return out


def _stats(vs: list[float]) -> dict[str, Any]:
    a = np.asarray(vs, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else None,
        "n": len(a),
    }


# ---------------------------------------------------------------------- markdown
def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table; floats with four significant digits."""

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(result: dict[str, Any]) -> str:
    """The Markdown report of a bench result, a preset result or a several-seed result."""
    if "results" in result:
        rows, cols = summary_rows(result["summary"])
        parts = [
            f"# recforget bench: {len(result['results'])} seeds {result.get('seeds')}",
            "## Summary (mean ± std over seeds)",
            markdown_table(rows, cols),
        ]
        for r in result["results"]:
            parts.append(_body(r, level="##"))
        return "\n\n".join(parts) + "\n"
    return _body(result, level="#") + "\n"


def _body(result: dict[str, Any], level: str) -> str:
    sub = level + "#"
    if "scenarios" in result:
        title = f"{level} {result['preset']}: {result['dataset']} / {result['model']}"
        data = result["data"]
        return "\n\n".join(
            [
                f"{title} (seed {result['seed']})",
                f"{data['train']} training cells; AUC on {data['test_positives']} held-out "
                f"positives and {data['test_negatives']} sampled negatives. Original: AUC "
                f"{result['original']['auc']:.4f}, fitted in "
                f"{result['original']['fit_seconds']:.2f}s.",
                markdown_table(preset_rows(result), PRESET_COLUMNS),
            ]
        )
    from recforget.evaluate.bench import TABLE_COLUMNS, table_rows

    parts = [
        f"{level} {result['dataset']} / {result['model']} / delete {result['scenario']} "
        f"(seed {result['seed']})",
        f"Removed: {result['request']}.",
        f"{sub} Forgetting and accuracy",
        markdown_table(table_rows(result), TABLE_COLUMNS),
    ]
    if consistency_rows(result):
        parts += [
            f"{sub} Consistency with the retrained model",
            "Score agreement on held-out and deleted pairs (Pearson r, Kendall tau, mean "
            "absolute gap), top-10 and item-neighbour Jaccard, and the mean rank of the "
            "deleted items for their former users.",
            markdown_table(consistency_rows(result), CONSISTENCY_COLUMNS),
        ]
    if attack_rows(result):
        parts += [
            f"{sub} Membership inference",
            "Attack AUC (0.5 = chance); compare each method with the retrained model.",
            markdown_table(attack_rows(result), ATTACK_COLUMNS),
        ]
    if partition_rows(result):
        parts += [
            f"{sub} Partition baselines",
            "Each ensemble's fit, its forgetting (shards retrained) and NDCG@10 before and "
            "after the deletion.",
            markdown_table(partition_rows(result), PARTITION_COLUMNS),
        ]
    if lira_table(result):
        lira = result["lira"]
        parts += [
            f"{sub} Calibrated membership inference (LiRA)",
            f"{lira['level'].capitalize()}-level likelihood-ratio attack, {lira['n_shadows']} "
            f"shadow models, {lira['n_members']} members against {lira['n_non_members']} "
            "non-members; bootstrap 95% intervals. A method that forgot sits inside the "
            "retrain's or the second-seed retrain's interval.",
            markdown_table(lira_table(result), LIRA_COLUMNS),
        ]
    if stream_rows(result):
        parts += [f"{sub} Stream checkpoints", markdown_table(stream_rows(result), STREAM_COLUMNS)]
    notes = (result.get("extras") or {}).get("notes") or {}
    missing = [f"* {k}: {v}" for k, v in notes.items() if v]
    if missing:
        parts += [f"{sub} Not measured", "\n".join(missing)]
    return "\n\n".join(parts)


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`render_markdown` of ``result`` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(result))
    return path


__all__ = [
    "aggregate",
    "attack_rows",
    "consistency_rows",
    "lira_table",
    "markdown_table",
    "preset_rows",
    "render_markdown",
    "stream_rows",
    "summary_rows",
    "write_report",
]
