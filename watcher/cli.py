"""Command line entry point (placeholder until the runtime lands)."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="cce-upgrade-watcher")
def cli() -> None:
    """Watch Huawei Cloud CCE upgrade workflows and notify people in time to act."""


def main() -> None:
    cli()
