"""Cycles in a directed graph given by a successor function: its strongly connected components, and a shortest
cycle through one of their vertices."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

V = TypeVar("V", bound=Hashable)


def strongly_connected(vertices: list[V], successors: Callable[[V], list[V]]) -> list[list[V]]:
    """The strongly connected components reachable from ``vertices``, by Tarjan's algorithm.

    Iterative, so that a long chain of vertices never hits Python's recursion limit. Components come out in
    reverse topological order (a component before any that leads to it).
    """
    index_of: dict[V, int] = {}
    low: dict[V, int] = {}
    stack: list[V] = []
    on_stack: set[V] = set()
    components: list[list[V]] = []
    counter = 0
    for root in vertices:
        if root in index_of:
            continue
        work: list[tuple[V, Iterator[V]]] = []
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(successors(root))))
        while work:
            vertex, pending = work[-1]
            advanced = False
            for target in pending:
                if target not in index_of:
                    index_of[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(successors(target))))
                    advanced = True
                    break
                if target in on_stack:
                    low[vertex] = min(low[vertex], index_of[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[vertex])
            if low[vertex] == index_of[vertex]:
                component: list[V] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == vertex:
                        break
                components.append(component)
    return components


def shortest_cycle_through(start: V, members: set[V], successors: Callable[[V], list[V]]) -> list[V]:
    """The shortest cycle from ``start`` back to itself through ``members`` (one strongly connected component).

    Given as the vertices along the way, ``start`` first and last; ``[start, start]`` when it leads only to itself.
    """
    previous: dict[V, V] = {}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for target in successors(current):
            if target == start:
                path = [current]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if target in members and target not in previous:
                previous[target] = current
                queue.append(target)
    return [start, start]
