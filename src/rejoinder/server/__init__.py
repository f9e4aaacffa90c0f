"""The HTTP face of rejoinder: the FastAPI app (:mod:`.app`), the client API, auth, errors and operations."""
