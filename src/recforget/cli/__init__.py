"""Command-line interface: ``recforget <command>`` (a click group, one module per command)."""

from __future__ import annotations

import click

from recforget import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recforget")
def main() -> None:
    """Train recommenders, make them forget data, and compare with retraining."""


def _register() -> None:
    from recforget.cli import info, recommend, train

    main.add_command(train.train)
    main.add_command(recommend.recommend)
    main.add_command(info.info)
    from recforget.cli import interop_export, interop_import

    main.add_command(interop_import.import_model)
    main.add_command(interop_export.export)
    for name in ("forget", "bench", "demo", "service", "audit", "spark"):
        try:
            module = __import__(f"recforget.cli.{name}", fromlist=[name])
        except ImportError:  # pragma: no cover - optional commands not yet present
            continue
        main.add_command(getattr(module, name))


_register()
