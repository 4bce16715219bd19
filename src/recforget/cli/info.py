"""``recforget info``: summary of a data set or a saved model."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from recforget.cli._common import data_options, emit_json, handle_errors, load_data


@click.command()
@click.argument("model_dir", required=False, type=click.Path(exists=True, file_okay=False))
@data_options
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def info(model_dir, dataset, data_path, fmt, threshold, duplicates, as_json):
    """Summarise MODEL_DIR, or the data set given by --dataset/--data."""
    if model_dir is not None:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
        summary = {
            "model": config.get("model"),
            "params": config.get("params"),
            **{k: v for k, v in manifest.items() if k != "loss_history"},
        }
    else:
        data = load_data(dataset, data_path, fmt, threshold, duplicates)
        uc, ic = data.user_counts(), data.item_counts()
        summary = {
            "n_users": data.n_users,
            "n_items": data.n_items,
            "nnz": data.nnz,
            "density": data.nnz / max(data.n_users * data.n_items, 1),
            "values": {
                "min": float(data.values.min()),
                "max": float(data.values.max()),
                "mean": float(data.values.mean()),
            },
            "per_user": {
                "min": int(uc.min()),
                "median": float(np.median(uc)),
                "max": int(uc.max()),
            },
            "per_item": {
                "min": int(ic.min()),
                "median": float(np.median(ic)),
                "max": int(ic.max()),
            },
            "timestamps": data.timestamps is not None,
            "fingerprint": data.fingerprint(),
        }
    if as_json:
        emit_json(summary)
        return
    for key, value in summary.items():
        click.echo(f"{key:>18}: {value}")
