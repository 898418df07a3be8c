"""Tests for cliproxy.http.headers: the hop-by-hop strip and the copies it makes.

``strip_hop_by_hop`` and ``without`` build their result without method calls (a plain loop,
``__new__``); each fast path is checked against the plain formula it replaces.
"""

import pytest

from cliproxy.http.headers import HOP_BY_HOP, Headers, strip_hop_by_hop

FIELD_SETS = [
    [],
    [("content-type", "application/json"), ("content-length", "12")],
    [("server", "nginx"), ("connection", "keep-alive"), ("keep-alive", "timeout=5"), ("x-a", "1")],
    # Connection names fields that are not hop-by-hop by themselves: they go too.
    [("connection", "close, X-Trace"), ("x-trace", "1"), ("x-b", "2"), ("connection", "x-b")],
    [("Connection", ""), ("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("x-kept", "yes")],
    [("upgrade", "h2c"), ("proxy-authorization", "Basic eA=="), ("set-cookie", "a"), ("x", "b")],
]


def _plain_strip(headers, dropped=HOP_BY_HOP):
    """``strip_hop_by_hop`` as first written: ``get_list`` then ``without``."""
    named = headers.get_list("connection")
    if named and not dropped.issuperset(named):
        dropped = dropped.union(named)
    return headers.without(dropped)


@pytest.mark.parametrize("items", FIELD_SETS)
@pytest.mark.parametrize("dropped", [HOP_BY_HOP, HOP_BY_HOP | {"content-length", "server"}])
def test_strip_hop_by_hop_equals_the_plain_formula(items, dropped):
    headers = Headers(items)
    assert strip_hop_by_hop(headers, dropped) == _plain_strip(headers, dropped)
    assert headers == Headers(items)  # the input is left alone


def test_strip_hop_by_hop_drops_the_fields_connection_names():
    headers = Headers([("Connection", "close, X-Trace"), ("X-Trace", "1"), ("X-Kept", "2")])
    assert strip_hop_by_hop(headers).items() == [("x-kept", "2")]


@pytest.mark.parametrize("items", FIELD_SETS)
def test_strip_and_without_return_copies_that_do_not_share_the_list(items):
    headers = Headers(items)
    for copy in (strip_hop_by_hop(headers), headers.without(frozenset())):
        assert type(copy) is Headers and copy is not headers
        copy.add("x-new", "1")
        assert "x-new" not in headers


def test_without_keeps_order_and_repeats():
    headers = Headers([("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")])
    assert headers.without({"b"}).items() == [("a", "1"), ("a", "3"), ("c", "4")]
