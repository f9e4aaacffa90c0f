"""``rejoinder chat``: talk to a bot in the terminal."""


def chat() -> None:
    """Talk to a bot in the terminal."""
    raise SystemExit("rejoinder chat: not available yet")
