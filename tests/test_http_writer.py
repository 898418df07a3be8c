"""Tests for cliproxy.http.writer: exact bytes, round trips through the parser, and
refusal of anything that could inject a field or a message."""

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
