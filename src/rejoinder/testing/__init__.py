"""Conversation tests for bots (``rejoinder test``): the file format, the runner and its report."""

from rejoinder.testing.fakes import FakeBackend, RecordedCall, UnmatchedCall
from rejoinder.testing.loader import NoTestsFound, TestFileError, find_test_files, load_test_file
from rejoinder.testing.model import ConversationTest, ConversationTestFile, FakeResponse, Start, Step
from rejoinder.testing.report import Reporter
from rejoinder.testing.results import CaseResult, Failure, RunSummary, StepLog
from rejoinder.testing.runner import run_tests

__all__ = [
    "CaseResult",
    "ConversationTest",
    "ConversationTestFile",
    "Failure",
    "FakeBackend",
    "FakeResponse",
    "NoTestsFound",
    "RecordedCall",
    "Reporter",
    "RunSummary",
    "Start",
    "Step",
    "StepLog",
    "TestFileError",
    "UnmatchedCall",
    "find_test_files",
    "load_test_file",
    "run_tests",
]
