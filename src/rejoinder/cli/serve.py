"""``rejoinder serve``: run the HTTP server for one or more bots."""


def serve() -> None:
    """Run the server."""
    raise SystemExit("rejoinder serve: not available yet")
