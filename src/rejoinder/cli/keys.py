"""``rejoinder keys create``."""

import typer

app = typer.Typer(help="SDK and secret keys.", no_args_is_help=True)
