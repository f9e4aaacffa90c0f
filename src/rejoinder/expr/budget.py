"""What the expressions of one turn may spend: steps of work, characters and items built, and time.

A value's size counts what it would take to write it out: characters of text, one per number or other item,
and the full size of every list it holds each time it holds it. ``[big] * 10`` is ten times ``big``, even
though Python only stores ten references: turned into text or JSON it would be written ten times.

A step is about a microsecond of work. A loop iteration, a call, and each item a filter such as ``map`` or
``select`` handles cost one; work done in bulk by Python's C code (``list``, ``sum``, ``join``, ``sort``,
writing a value as text) costs one step per :data:`BULK_ITEMS` items or per :data:`TEXT_CHARACTERS`
characters. Whatever the steps, a turn's evaluation also stops once it has used its time budget of the CPU: time
the thread spends computing, not waiting for a busy machine to schedule it, so a trivial turn is never failed for
the load around it while C code the steps do not see is still bounded. Reading the thread's CPU clock is a system
call (about 1.5 µs, ten times a step), so it is read once per :data:`CLOCK_EVERY` steps. A full collection of
garbage walks the whole process's heap in whichever thread happens to allocate: its time is not the turn's, and
moves the deadline on (the turn's own objects, which it could make the collector walk, are bounded by
:data:`MAX_PRODUCED`).
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

MAX_STEPS = 50_000  # steps in one turn (or one evaluation outside a turn): some 50 ms of work
MAX_PRODUCED = 20_000_000  # characters and items built in one turn
MAX_VALUE_SIZE = 1_000_000  # the size of one value: characters and items, nested lists counted in full
DEFAULT_TIME_BUDGET = 0.5  # seconds of evaluation in one turn
BULK_ITEMS = 16
WRITTEN_ITEMS = 4  # writing a value as text or JSON costs more per item than copying or summing it
TEXT_CHARACTERS = 1024
MATCHED_CHARACTERS = 64
_CHUNK = 64  # items of an iterator charged at once
CLOCK_EVERY = 32  # steps between two readings of the thread's CPU clock

_ATOMS = frozenset({int, float, bool, type(None)})
_CONTAINERS = (list, tuple, dict)
_SIZED = (list, tuple, dict, str, range, Mapping)


class OverBudget(Exception):
    """The turn's expressions went over one of their limits."""


class Budget:
    """What one turn's expressions have used so far."""

    __slots__ = (
        "_collecting_since",
        "_next_clock",
        "_sizes",
        "deadline",
        "nesting",
        "produced",
        "steps",
        "time_budget",
    )

    def __init__(self, time_budget: float = DEFAULT_TIME_BUDGET) -> None:
        self.steps = 0
        self.produced = 0
        self.nesting = 0
        self.time_budget = time_budget
        self.deadline = time.thread_time() + time_budget
        self._next_clock = 0
        self._collecting_since: float | None = None
        # id -> (value, size): the value is kept so that its id cannot be reused while the turn lasts.
        self._sizes: dict[int, tuple[Any, int]] = {}

    def step(self, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > MAX_STEPS:
            raise OverBudget(f"more than {MAX_STEPS:,} loop iterations and calls (steps of work)")
        if self.steps >= self._next_clock:
            self._next_clock = self.steps + CLOCK_EVERY
            if time.thread_time() > self.deadline:
                raise OverBudget(f"evaluation took longer than {self.time_budget:g} s of CPU")

    def produce(self, size: int) -> None:
        self.produced += size
        if self.produced > MAX_PRODUCED:
            raise OverBudget(f"builds more than {MAX_PRODUCED:,} characters or items in total")

    def size_of(self, value: Any) -> int:
        """The size of ``value`` (see the module's text); lists shared by reference are counted each time."""
        kind = type(value)
        if kind is str:
            return len(value)
        if kind in _ATOMS or not isinstance(value, _CONTAINERS):
            return 1
        if len(value) > MAX_VALUE_SIZE:
            return len(value)  # too large already, whatever it holds
        cached = self._sizes.get(id(value))
        if cached is not None and cached[0] is value:
            return cached[1]
        return self._measure(value)

    def _measure(self, root: Any) -> int:
        """Sizes of ``root`` and the containers inside it, bottom up, without recursion (nesting can be deep)."""
        sizes: dict[int, int] = {}
        cache = self._sizes
        pending: list[tuple[Any, bool]] = [(root, False)]
        opened: set[int] = set()
        while pending:
            value, children_done = pending.pop()
            key = id(value)
            if key in sizes:
                continue
            if not children_done and type(value) is not dict:
                kinds = set(map(type, value))  # C code: lists of numbers or of texts are measured at once
                if kinds <= _ATOMS or kinds == {str}:
                    self.step(len(value) // BULK_ITEMS + 1)
                    total = len(value) + (sum(map(len, value)) if kinds == {str} else 0)
                    sizes[key] = total
                    cache[key] = (value, total)
                    continue
            if not children_done:
                opened.add(key)
                pending.append((value, True))
                for item in _children(value):
                    cached = cache.get(id(item))
                    if cached is not None and cached[0] is item:
                        sizes[id(item)] = cached[1]
                    elif id(item) not in sizes and id(item) not in opened:
                        pending.append((item, False))
                continue
            self.step(len(value) // BULK_ITEMS + 2)  # + 2: walking a list or object is Python code
            total = len(value)
            for item in _children(value, strings=True):
                total += len(item) if type(item) is str else sizes.get(id(item), 1)  # 1: a cycle
            sizes[key] = total
            cache[key] = (value, total)
        return sizes[id(root)]

    def check_size(self, value: Any, what: str, limit: int = MAX_VALUE_SIZE) -> int:
        """The size of ``value``; refuses it when larger than ``limit``."""
        size = self.size_of(value)
        if size > limit:
            raise OverBudget(f"{what}: the result would be larger than {limit:,} characters or items")
        return size

    def charge_bulk(self, value: Any) -> None:
        """Charges work that C code does over ``value`` (copying, summing, sorting, searching it)."""
        if isinstance(value, str):
            self.step(len(value) // TEXT_CHARACTERS + 1)
        elif isinstance(value, _SIZED):
            self.step(len(value) // BULK_ITEMS + 1)

    def charge_writing(self, value: Any) -> int:
        """Charges writing ``value`` as text or JSON; returns its size, a lower bound of the text's length."""
        size = self.size_of(value)
        if isinstance(value, str):  # the text filters (wordcount, striptags, urlize…) run regular expressions
            self.step(size // MATCHED_CHARACTERS + 1)
        else:
            self.step(size // WRITTEN_ITEMS + 1)
        return size


def _children(value: Any, *, strings: bool = False) -> Iterator[Any]:
    """The items (for an object, its keys and values) of ``value`` that are containers, or also texts."""
    items = itertools.chain.from_iterable(value.items()) if isinstance(value, dict) else value
    for item in items:
        kind = type(item)
        if kind in _ATOMS:
            continue
        if kind is str:
            if strings:
                yield item
        elif isinstance(item, _CONTAINERS):
            yield item


_BUDGET: ContextVar[Budget | None] = ContextVar("rejoinder_expr_budget", default=None)


def _not_counting_full_collections(phase: str, info: dict[str, int]) -> None:
    if info["generation"] != 2:
        return  # the young generations are small: their collections are the turn's own allocations' cost
    budget = _BUDGET.get()
    if budget is None:
        return
    if phase == "start":
        budget._collecting_since = time.thread_time()
    elif budget._collecting_since is not None:
        budget.deadline += time.thread_time() - budget._collecting_since
        budget._collecting_since = None


gc.callbacks.append(_not_counting_full_collections)


def current() -> Budget:
    """The budget of the turn running now; outside a turn, a fresh one for this call alone."""
    budget = _BUDGET.get()
    return budget if budget is not None else Budget()


def active() -> Budget | None:
    return _BUDGET.get()


@contextmanager
def spending(budget: Budget) -> Iterator[Budget]:
    """Makes ``budget`` the one every expression evaluated inside the block draws on."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def counted(iterable: Iterable[Any], per: int = 1) -> Iterable[Any]:
    """``iterable``, charging a step per ``per`` items: at once when its length is known, else as it goes."""
    budget = current()
    if isinstance(iterable, _SIZED):
        budget.step(-(-len(iterable) // per))
        return iterable
    return _charged(iter(iterable), budget, per)


def _charged(items: Iterator[Any], budget: Budget, per: int) -> Iterator[Any]:
    while True:
        chunk = list(itertools.islice(items, _CHUNK))
        if not chunk:
            return
        budget.step(-(-len(chunk) // per))
        yield from chunk


def text(value: Any, what: str, limit: int = MAX_VALUE_SIZE) -> str:
    """``str(value)``, refused before it is built when it would be longer than ``limit`` characters."""
    if type(value) is str:
        return value
    size = current().charge_writing(value)  # every item takes a character at least: a lower bound
    if size > limit:
        raise OverBudget(f"{what}: the text would be longer than {limit:,} characters")
    written = str(value)
    if len(written) > limit:
        raise OverBudget(f"{what}: the text would be longer than {limit:,} characters")
    return written
