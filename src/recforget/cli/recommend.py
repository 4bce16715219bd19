"""``recforget recommend``: top-k items for users of a saved model."""

from __future__ import annotations

import click

from recforget.cli._common import emit_json, handle_errors


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--user", "users", multiple=True, required=True, help="Raw user id (repeatable).")
@click.option("-k", default=10, show_default=True)
@click.option("--include-seen", is_flag=True, help="Do not exclude the user's training items.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def recommend(model_dir, users, k, include_seen, as_json):
    """Recommend K items to each --user of the model in MODEL_DIR."""
    from recforget.models.registry import load_model

    model = load_model(model_dir)
    items, scores = model.recommend(list(users), k=k, exclude_seen=not include_seen)
    out = {
        u: [{"item": it, "score": float(s)} for it, s in zip(row, srow, strict=True)]
        for u, row, srow in zip(users, items.tolist(), scores, strict=True)
    }
    if as_json:
        emit_json(out)
        return
    for u, recs in out.items():
        click.echo(f"user {u}:")
        for rank, rec in enumerate(recs, 1):
            click.echo(f"  {rank:>3}. {rec['item']}  ({rec['score']:.4f})")
