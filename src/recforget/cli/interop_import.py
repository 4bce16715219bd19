"""``recforget import``: turn another library's trained model into a recforget model directory."""

from __future__ import annotations

from pathlib import Path

import click

from recforget.cli._common import handle_errors


def _read_data(path: str, fmt: str, duplicates: str):
    """An interaction file, or (``.npz``) a scipy sparse matrix saved with ``save_npz``."""
    from recforget.data import readers

    if path.endswith(".npz"):
        import scipy.sparse as sp

        from recforget.data.errors import DataError

        try:
            return sp.load_npz(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"not a scipy sparse matrix file: {exc}", file=path) from exc
    return readers.read_interactions(path, format=fmt, duplicates=duplicates)


@click.command("import")
@click.option(
    "--from",
    "library",
    type=click.Choice(["implicit", "lenskit"]),
    required=True,
    help="The library that trained the model.",
)
@click.argument("source", type=click.Path(exists=True))
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True),
    required=True,
    help="The data the model was trained on: an interaction file (implicit: ids are row "
    "numbers), or for implicit the user_items matrix saved with scipy.sparse.save_npz.",
)
@click.option("--format", "fmt", default="auto", show_default=True, help="Format of --data.")
@click.option(
    "--duplicates",
    type=click.Choice(["error", "sum", "mean", "max", "last", "first"]),
    default="error",
    show_default=True,
    help="Policy for repeated (user, item) pairs in --data.",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@handle_errors
def import_model(library, source, data_path, fmt, duplicates, out_dir):
    """Import SOURCE (implicit: the .npz of AlternatingLeastSquares.save; lenskit: a state
    directory of recforget.interop.lenskit) as a recforget ALS model in --out.

    The model's parameters reproduce the library's training objective, so `recforget forget`
    minimises that objective on the remaining data.
    """
    data = _read_data(data_path, fmt, duplicates)
    if library == "implicit":
        from recforget.interop.implicit import from_implicit

        model = from_implicit(Path(source), data)
    else:
        from recforget.interop.lenskit import from_lenskit, load_state

        state = load_state(source)
        if state[0] == "BiasedMFScorer":
            raise click.UsageError(
                "a LensKit BiasedMF model's bias model must be refitted when it forgets: use "
                "recforget.interop.lenskit.forget_biased from Python"
            )
        if not hasattr(data, "users"):
            raise click.UsageError("lenskit --data must be an interaction file with raw ids")
        model = from_lenskit(state, data)
    cert = model.certify()["certificate"]["max_relative"]
    model.save(out_dir, extra_manifest={"imported_from": {"library": library, "file": source}})
    click.echo(
        f"imported {library} model: {model.seen_.n_users} users x {model.seen_.n_items} items, "
        f"{model.factors} factors; max relative residual {cert:.3g} on its own objective; "
        f"saved to {out_dir}"
    )
