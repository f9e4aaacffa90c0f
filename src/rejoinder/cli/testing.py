"""``rejoinder test``: run a bot's conversation tests."""


def test() -> None:
    """Run conversation tests."""
    raise SystemExit("rejoinder test: not available yet")
