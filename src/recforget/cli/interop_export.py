"""``recforget export``: write a recforget ALS model in another library's format."""

from __future__ import annotations

import click

from recforget.cli._common import handle_errors


@click.command()
@click.option(
    "--to",
    "library",
    type=click.Choice(["implicit", "lenskit"]),
    required=True,
    help="The library to write for.",
)
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    "out_path",
    type=click.Path(),
    required=True,
    help="implicit: the .npz to write; lenskit: the state directory to write.",
)
@click.option(
    "--like",
    type=click.Path(exists=True),
    default=None,
    help="The originally imported file: keeps implicit's row count and settings, or LensKit's "
    "scorer config.",
)
@handle_errors
def export(library, model_dir, out_path, like):
    """Write the ALS model in MODEL_DIR (e.g. after `recforget forget`) for LIBRARY."""
    from recforget.models.als import ALS

    model = ALS.load(model_dir)
    if library == "implicit":
        from recforget.interop.implicit import to_implicit

        to_implicit(model, out_path, like=like)
    else:
        from recforget.interop.lenskit import to_lenskit

        to_lenskit(model, out_path, like=like)
    click.echo(f"wrote {library} model to {out_path}")
