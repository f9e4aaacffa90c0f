"""``rejoinder skills check|graph``."""

import typer

app = typer.Typer(help="Validate and draw skills.", no_args_is_help=True)
