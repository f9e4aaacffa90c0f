"""JSON paths: the syntax of ``save:`` and ``json_get()``, and the messages for missing values."""

from __future__ import annotations

import pytest

from rejoinder.expr.jsonpath import InvalidPath, PathNotFound, format_path, lookup, parse

DOC = {
    "login_url": "https://shop.test/login",
    "order": {"id": 42, "items": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}]},
    "x y": {"a.b": "dotted", "it's": "quoted"},
    "codes": {"200": "ok"},
    "empty": [],
    "nothing": None,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("login_url", "https://shop.test/login"),
        ("order.id", 42),
        ("order.items[0].sku", "A1"),
        ("order.items[1].qty", 1),
        ("order.items[-1].sku", "B7"),
        ("order.items[-2].sku", "A1"),
        ("$.order.id", 42),
        ("$order.id", 42),
        ("$['order']['id']", 42),
        ('$["x y"]["a.b"]', "dotted"),
        ("""$['x y']["it's"]""", "quoted"),
        ("order.items.1.sku", "B7"),  # a numeric key indexes a list
        ("codes[200]", "ok"),  # an index looks up an object's key of the same digits
        ("order.items[ 0 ].sku", "A1"),
        ("  order.id  ", 42),
        ("nothing", None),
    ],
)
def test_lookup_finds_values(path: str, expected: object) -> None:
    assert lookup(DOC, path) == expected


@pytest.mark.parametrize("path", ["$", "$.", "."])
def test_root_paths_return_the_whole_value(path: str) -> None:
    assert lookup(DOC, path) is DOC
    assert lookup([1, 2], path) == [1, 2]


def test_a_path_can_start_with_an_index() -> None:
    assert lookup([{"a": 1}, {"a": 2}], "[1].a") == 2
    assert lookup([{"a": 1}, {"a": 2}], "$[0].a") == 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("order.total", "no key 'total' at $.order"),
        ("order.items[2].sku", "no item [2] at $.order.items: the list has 2 items"),
        ("order.items[-3]", "no item [-3] at $.order.items: the list has 2 items"),
        ("empty[0]", "no item [0] at $.empty: the list has 0 items"),
        ("order.items.first", "no key 'first' at $.order.items: it is a list"),
        ("order.id.value", "no 'value' at $.order.id: it is a number"),
        ("login_url[0]", "no [0] at $.login_url: it is text"),
        ("nothing.x", "no 'x' at $.nothing: it is null"),
        ('$["x y"].missing', "no key 'missing' at $[\"x y\"]"),
    ],
)
def test_missing_values_name_the_first_missing_segment(path: str, message: str) -> None:
    with pytest.raises(PathNotFound) as caught:
        lookup(DOC, path)
    assert str(caught.value) == message
    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize("path", ["", "   ", "a[", "a[x]", "a..b", "a.", "a b", "a[0", '["open]'])
def test_malformed_paths_are_rejected(path: str) -> None:
    with pytest.raises(InvalidPath):
        lookup(DOC, path)


def test_a_path_must_be_text() -> None:
    with pytest.raises(InvalidPath, match="must be text"):
        parse(["a"])  # type: ignore[arg-type]


def test_parse_gives_keys_and_indexes_and_unescapes_quotes() -> None:
    assert parse('$.a["b \\"c\\""][-1].d') == ("a", 'b "c"', -1, "d")
    assert parse("a.0") == ("a", "0")
    assert parse("$") == ()


def test_parsed_paths_are_cached() -> None:
    assert parse("order.items[0].sku") is parse("order.items[0].sku")


def test_format_path_round_trips() -> None:
    for path in ["$.a.b[0]", '$["x y"].c', "$[3]"]:
        assert format_path(parse(path)) == path
        assert parse(format_path(parse(path))) == parse(path)
