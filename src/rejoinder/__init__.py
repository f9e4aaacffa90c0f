"""rejoinder: resumable chatbot conversations."""

__version__ = "0.1.0"
