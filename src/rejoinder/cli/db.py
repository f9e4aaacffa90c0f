"""``rejoinder db upgrade``."""

import typer

app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
