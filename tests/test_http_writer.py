"""Tests for cliproxy.http.writer: exact bytes, round trips through the parser, and
refusal of anything that could inject a field or a message."""

import http
import re

import pytest

from cliproxy.http.headers import Headers
from cliproxy.http.parser import (
    NEED_DATA,
    Data,
    EndOfMessage,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from cliproxy.http.writer import (
    CONTINUE,
    LAST_CHUNK,
    encode_chunk,
    encode_request_head,
    encode_response_head,
)


def _events(parser, data):
    parser.feed(data)
    out = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)


def test_request_head_bytes():
    headers = Headers([("Host", "example.com"), ("Content-Length", "2")])
    assert encode_request_head("POST", "/v1/messages?beta=true", headers) == (
        b"POST /v1/messages?beta=true HTTP/1.1\r\n"
        b"host: example.com\r\ncontent-length: 2\r\n\r\n"
    )


def test_request_head_round_trip():
    headers = Headers([("host", "api.example.com"), ("x-a", "1"), ("x-a", "caf\xe9\tb")])
    headers.add("content-length", "2")
    data = encode_request_head("POST", "/p?q=1", headers) + b"hi"
    events = _events(RequestParser(), data)
    head = events[0]
    assert (head.method, head.target, head.version) == ("POST", "/p?q=1", "HTTP/1.1")
    assert head.headers == headers
    assert events[1:] == [Data(b"hi"), EndOfMessage()]


def test_response_head_bytes_and_reason_table():
    assert encode_response_head(404, Headers()) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert encode_response_head(200, Headers(), "Fine") == b"HTTP/1.1 200 Fine\r\n\r\n"
    assert encode_response_head(599, Headers()) == b"HTTP/1.1 599 \r\n\r\n"
    assert encode_response_head(429, Headers()).startswith(b"HTTP/1.1 429 Too Many Requests\r\n")


@pytest.mark.parametrize("status, reason", [(200, None), (503, "Try Later"), (599, None)])
def test_response_head_round_trip(status, reason):
    headers = Headers([("content-type", "application/json"), ("content-length", "0")])
    parser = ResponseParser()
    parser.start("GET")
    events = _events(parser, encode_response_head(status, headers, reason))
    expected_reason = {200: "OK", 599: ""}.get(status, reason)
    assert events == [
        ResponseHead(status, expected_reason, "HTTP/1.1", headers, True),
        EndOfMessage(),
    ]


def test_chunks_round_trip():
    pieces = [b"a", b"", b"x" * 300, bytearray(b"tail"), memoryview(b"mv")]
    framed = b"".join(encode_chunk(piece) for piece in pieces) + LAST_CHUNK
    head = encode_response_head(200, Headers([("transfer-encoding", "chunked")]))
    parser = ResponseParser()
    parser.start("POST")
    events = _events(parser, head + framed)
    assert b"".join(e.data for e in events if type(e) is Data) == b"a" + b"x" * 300 + b"tailmv"
    assert events[-1] == EndOfMessage()


def test_chunk_encoding_and_constants():
    assert encode_chunk(b"") == b""
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"z" * 26) == b"1a\r\n" + b"z" * 26 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"
    parser = ResponseParser()
    parser.start("POST")
    event = _events(parser, CONTINUE)[0]
    assert (event.status, event.reason) == (100, "Continue")


@pytest.mark.parametrize(
    "value",
    ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\x01b", "a\x7fb", "\r\n\r\nGET / HTTP/1.1"],
)
def test_values_with_line_breaks_or_controls_are_refused(value):
    with pytest.raises(ValueError):
        encode_request_head("GET", "/", Headers([("x-a", value)]))
    with pytest.raises(ValueError):
        encode_response_head(200, Headers([("x-a", value)]))


@pytest.mark.parametrize("name", ["x a", "x:a", "x\r\ny", "", "x\x00"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ValueError):
        encode_response_head(200, Headers.from_lowered([(name, "v")]))


def test_invalid_start_lines_are_refused():
    with pytest.raises(ValueError):
        encode_request_head("GE T", "/", Headers())
    with pytest.raises(ValueError):
        encode_request_head("GET", "/a b", Headers())
    with pytest.raises(ValueError):
        encode_request_head("GET", "/a\r\nX: 1", Headers())
    with pytest.raises(ValueError):
        encode_request_head("GET", "", Headers())
    with pytest.raises(ValueError):
        encode_response_head(200, Headers(), "OK\r\nX: 1")
    with pytest.raises(ValueError):
        encode_response_head(42, Headers())


def test_characters_outside_latin1_are_refused():
    with pytest.raises(ValueError):
        encode_request_head("GET", "/", Headers([("x-a", "\u2603")]))


# --- the cached status lines and the one-pass head give exactly the old bytes ----------


_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _reference_response_head(status, headers, reason=None):
    """The response head as the writer made it before the caches: names checked one by
    one, then formatted and checked as a whole."""
    if not 100 <= status <= 999:
        raise ValueError("invalid status code %r" % (status,))
    if reason is None:
        reason = {s.value: s.phrase for s in http.HTTPStatus}.get(status, "")
    for name, _ in headers:
        if _NAME.fullmatch(name) is None:
            raise ValueError("invalid header name %r" % (name[:64],))
    text = "HTTP/1.1 %d %s\r\n" % (status, reason)
    data = (text + "".join(["%s: %s\r\n" % item for item in headers]) + "\r\n").encode(
        "latin-1"
    )
    allowed = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
    if len(data.translate(None, allowed)) != 2 * len(headers) + 4:
        raise ValueError("CR, LF or a control character in a header value")
    return data


def _outcome(func, *args):
    try:
        return ("ok", func(*args))
    except ValueError as exc:
        return (type(exc).__name__, str(exc))


def test_every_status_line_is_the_same_cold_and_cached():
    fields = Headers.from_lowered([("content-type", "application/json")])
    for status in range(100, 1000):
        expected = _reference_response_head(status, fields)
        assert encode_response_head(status, fields) == expected
        assert encode_response_head(status, fields) == expected  # from the cache
    assert encode_response_head(http.HTTPStatus.OK, []) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert encode_response_head(200, [], "Fine") == b"HTTP/1.1 200 Fine\r\n\r\n"
    assert encode_response_head(200, []) == b"HTTP/1.1 200 OK\r\n\r\n"


@pytest.mark.parametrize("status", [99, 1000, 0, -200, 99.5])
def test_invalid_status_is_refused_every_time(status):
    for _ in range(2):
        with pytest.raises(ValueError, match="invalid status code"):
            encode_response_head(status, [])


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [("content-length", "15")],
        [("x-new-name-for-the-cache", "v"), ("content-type", "text/plain")],
        [("x-ok", "v"), ("bad name", "v")],
        [("bad@name", "v\r\ninjected: 1")],
        [("x-ok", "v\r\ninjected: 1")],
        [("x-ok", "v\n")],
        [("x-ok", "v\r")],
        [("x-ok", "a\x00b")],
        [("x-ok", "a\x7fb")],
        [("x-ok", "tab\tok"), ("x-obs", "caf\xe9")],
        [("x-ok", "snow\u2603")],
        [("x-num", 15)],
    ],
)
def test_one_pass_head_matches_the_field_by_field_reference(fields):
    for _ in range(2):  # cold and warm name cache
        expected = _outcome(_reference_response_head, 200, fields)
        assert _outcome(encode_response_head, 200, fields) == expected
        assert _outcome(encode_response_head, 200, Headers.from_lowered(fields)) == expected


def test_fields_from_a_one_shot_iterable_are_all_written():
    fields = [("host", "a"), ("x-b", "c")]
    expected = b"GET / HTTP/1.1\r\nhost: a\r\nx-b: c\r\n\r\n"
    assert encode_request_head("GET", "/", iter(fields)) == expected
    assert encode_request_head("GET", "/", (item for item in fields)) == expected
    with pytest.raises(ValueError, match="invalid header name"):
        encode_request_head("GET", "/", iter([("x-ok", "v"), ("bad name", "v")]))


@pytest.mark.parametrize("method", ["GET", "POST", "BREW", "M-SEARCH", "get"])
def test_common_and_other_token_methods_are_written_alike(method):
    assert encode_request_head(method, "/", []) == b"%s / HTTP/1.1\r\n\r\n" % method.encode()


@pytest.mark.parametrize("method", ["GE T", "", "GET\r\n", "P@ST", "G\u00c9T"])
def test_methods_that_are_not_tokens_are_refused(method):
    with pytest.raises(ValueError, match="invalid method"):
        encode_request_head(method, "/", [])
