"""Tests for cliproxy.http.parser: framing, validation, EOF, limits, and a seeded fuzz run.

Every input goes through ``run()``, which parses it fed whole and fed one byte at a time
and asserts both give the same events (consecutive ``Data`` merged) or the same error.
"""

import random
import time

import pytest

from cliproxy.http import parser as _parser
from cliproxy.http.headers import Headers
from cliproxy.http.parser import (
    CONNECTION_CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    ProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)


class Outcome:
    def __init__(self, events, status=None, message=None):
        self.events = events
        self.status = status
        self.message = message

    def key(self):
        return (self.events, self.status, self.message)


def _coalesce(events):
    out = []
    for event in events:
        if type(event) is Data and out and type(out[-1]) is Data:
            out[-1] = Data(out[-1].data + event.data)
        elif type(event) is Data and not event.data:
            raise AssertionError("empty Data event")
        else:
            out.append(event)
    return out


def _drive(make, pieces, eof, methods):
    parser = make()
    methods = list(methods or ())
    if methods:
        parser.start(methods.pop(0))
    events = []

    def drain():
        for _ in range(100000):
            event = parser.next_event()
            if event is NEED_DATA:
                return
            events.append(event)
            if event is CONNECTION_CLOSED:
                return
            if type(event) is ResponseHead and event.status == 101:
                del methods[:]
            if type(event) is EndOfMessage and methods:
                parser.start(methods.pop(0))
        raise AssertionError("parser does not settle")

    try:
        for piece in pieces:
            parser.feed(piece)
            drain()
        if eof:
            parser.feed_eof()
            drain()
    except ProtocolError as exc:
        return Outcome(_coalesce(events), exc.status, exc.message), parser
    return Outcome(_coalesce(events)), parser


def run(data, eof=False, kind="request", methods=None, max_header_bytes=65536):
    """Parse ``data`` whole and byte by byte; assert identical outcomes; return one."""

    def make():
        cls = RequestParser if kind == "request" else ResponseParser
        return cls(max_header_bytes=max_header_bytes)

    whole, _ = _drive(make, [data], eof, methods)
    single, _ = _drive(make, [data[i : i + 1] for i in range(len(data))], eof, methods)
    assert whole.key() == single.key()
    return whole


def status_of(data, **kwargs):
    outcome = run(data, **kwargs)
    assert outcome.status is not None, outcome.events
    return outcome.status


def head(outcome, index=0):
    heads = [e for e in outcome.events if isinstance(e, (RequestHead, ResponseHead))]
    return heads[index]


def body(outcome):
    return b"".join(e.data for e in outcome.events if type(e) is Data)


GET = b"GET /v1/models?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


# --- requests: framing -------------------------------------------------------------------


def test_get_without_body_is_head_then_end():
    outcome = run(GET)
    assert outcome.status is None
    assert outcome.events == [
        RequestHead(
            "GET",
            "/v1/models?x=1",
            "HTTP/1.1",
            Headers([("host", "example.com"), ("accept", "*/*")]),
            True,
            False,
            False,
            0,  # no framing field: no body
        ),
        EndOfMessage(Headers()),
    ]


def test_content_length_body():
    outcome = run(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world")
    assert head(outcome).content_length == 11
    assert body(outcome) == b"hello world"
    assert type(outcome.events[-1]) is EndOfMessage


def test_content_length_zero_ends_at_once():
    outcome = run(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    assert [type(e) for e in outcome.events] == [RequestHead, EndOfMessage]
    assert head(outcome).content_length == 0


def test_content_length_hands_out_everything_buffered_in_one_event():
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n" + b"x" * 10)
    assert type(parser.next_event()) is RequestHead
    assert parser.next_event() == Data(b"x" * 10)
    assert parser.next_event() is NEED_DATA
    parser.feed(b"y" * 15)
    assert parser.next_event() == Data(b"y" * 10)
    assert parser.next_event() == EndOfMessage()
    assert parser.has_buffered_data


def test_chunked_body_with_extensions_and_trailers():
    data = (
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b'6 ; q="a \\"quoted\\" ;ext" ; flag\r\n world\r\n'
        b"A\r\n0123456789\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other:  two \r\n\r\n"
    )
    outcome = run(data)
    assert head(outcome).content_length is None
    assert body(outcome) == b"hello world0123456789"
    assert outcome.events[-1] == EndOfMessage(
        Headers([("x-checksum", "abc"), ("x-other", "two")])
    )


def test_chunked_without_trailers_and_uppercase_coding():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    outcome = run(data)
    assert body(outcome) == b"abc"
    assert outcome.events[-1] == EndOfMessage()


def test_sixteen_hex_digit_chunk_size_is_accepted():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc"
    outcome = run(data)
    assert outcome.status is None
    assert body(outcome) == b"abc"


def test_three_pipelined_requests_come_out_in_order():
    data = (
        b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /three HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
    )
    outcome = run(data, eof=True)
    kinds = [type(e).__name__ for e in outcome.events[:-1]]
    assert kinds == [
        "RequestHead", "EndOfMessage",
        "RequestHead", "Data", "EndOfMessage",
        "RequestHead", "Data", "EndOfMessage",
    ]  # fmt: skip
    assert [head(outcome, i).target for i in range(3)] == ["/one", "/two", "/three"]
    assert [e.data for e in outcome.events if type(e) is Data] == [b"abc", b"de"]
    assert outcome.events[-1] is CONNECTION_CLOSED


def test_leading_empty_lines_are_skipped():
    outcome = run(b"\r\n\r\n" + GET)
    assert head(outcome).method == "GET"


def test_pipelined_request_after_body_only_parsed_on_demand():
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nz" + GET)
    assert type(parser.next_event()) is RequestHead
    assert parser.next_event() == Data(b"z")
    assert parser.next_event() == EndOfMessage()
    assert parser.has_buffered_data
    assert parser.next_event().target == "/v1/models?x=1"


# --- requests: flags ---------------------------------------------------------------------


def test_expect_continue_flag():
    outcome = run(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
    assert head(outcome).expect_continue is True
    assert run(GET).events[0].expect_continue is False


def test_expect_continue_ignored_for_http_1_0():
    outcome = run(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx")
    assert head(outcome).expect_continue is False


@pytest.mark.parametrize(
    "version, connection, expected",
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Keep-Alive, Close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"close", False),
    ],
)
def test_keep_alive_rules(version, connection, expected):
    data = b"GET / HTTP/" + version + b"\r\nHost: h\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    outcome = run(data + b"\r\n")
    assert head(outcome).version == "HTTP/" + version.decode()
    assert head(outcome).keep_alive is expected


@pytest.mark.parametrize(
    "fields, expected",
    [
        (b"Connection: Upgrade\r\nUpgrade: websocket\r\n", True),
        (b"Connection: keep-alive, upgrade\r\nUpgrade: websocket\r\n", True),
        (b"Connection: upgrade\r\n", False),
        (b"Upgrade: websocket\r\n", False),
    ],
)
def test_upgrade_flag(fields, expected):
    outcome = run(b"GET /ws HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")
    assert head(outcome).upgrade is expected


def test_take_trailing_after_upgrade_request_returns_the_tunnel_bytes():
    parser = RequestParser()
    parser.feed(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
    assert parser.next_event().upgrade is True
    assert parser.next_event() == EndOfMessage()
    assert parser.has_buffered_data is True
    assert parser.take_trailing() == b"\x81\x05hello"
    assert parser.has_buffered_data is False
    assert parser.take_trailing() == b""


def test_connect_request_has_no_body_and_keeps_trailing_bytes():
    parser = RequestParser()
    parser.feed(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n\x16\x03\x01")
    event = parser.next_event()
    assert (event.method, event.target) == ("CONNECT", "api.example.com:443")
    assert parser.next_event() == EndOfMessage()
    assert parser.take_trailing() == b"\x16\x03\x01"


def test_header_values_are_ows_stripped_and_latin1_decoded():
    outcome = run(b"GET / HTTP/1.1\r\nHost:h\r\nX-A: \t v \xe9 \t\r\nX-Empty:\r\nX-A: 2\r\n\r\n")
    headers = head(outcome).headers
    assert headers.get_all("x-a") == ["v \xe9", "2"]
    assert headers.get("x-empty") == ""


def test_http_1_0_request_without_host_is_accepted():
    outcome = run(b"GET / HTTP/1.0\r\n\r\n")
    assert head(outcome).version == "HTTP/1.0"


def test_target_may_hold_obs_text():
    outcome = run(b"GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert head(outcome).target == "/caf\xe9"


# --- requests: EOF ---------------------------------------------------------------------------


def test_clean_eof_between_messages_is_connection_closed():
    assert run(b"", eof=True).events == [CONNECTION_CLOSED]
    outcome = run(GET, eof=True)
    assert outcome.events[-1] is CONNECTION_CLOSED and outcome.status is None
    assert run(GET + b"\r\n", eof=True).events[-1] is CONNECTION_CLOSED


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r",
    ],
)
def test_eof_mid_message_is_400(data):
    outcome = run(data, eof=True)
    assert (outcome.status, outcome.message) == (400, "connection closed mid-message")


def test_feed_after_eof_is_a_programming_error():
    parser = RequestParser()
    parser.feed_eof()
    with pytest.raises(RuntimeError):
        parser.feed(b"x")


# --- requests: rejections ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, status",
    [
        (b"Content-Length: 5, 5\r\n", None),
        (b"Content-Length: 5\r\nContent-Length: 5\r\n", None),
        (b"Content-Length: 005\r\n", None),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"Content-Length: 5, 6\r\n", 400),
        (b"Content-Length: +5\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: 0x5\r\n", 400),
        (b"Content-Length: 5a\r\n", 400),
        (b"Content-Length: 5 5\r\n", 400),
        (b"Content-Length: \r\n", 400),
        (b"Content-Length: 5,\r\n", 400),
        (b"Content-Length: \xb2\r\n", 400),
        (b"Content-Length: 1000000000000000000\r\n", 413),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: gzip\r\n", 501),
        (b"Transfer-Encoding: gzip, chunked\r\n", 501),
        (b"Transfer-Encoding: chunked, gzip\r\n", 501),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 501),
        (b"Transfer-Encoding: identity\r\n", 501),
        (b"Transfer-Encoding: \r\n", 400),
    ],
)
def test_framing_fields(fields, status):
    data = b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\nhello"
    outcome = run(data)
    assert outcome.status == status
    if status is None:
        assert body(outcome) == b"hello"


@pytest.mark.parametrize(
    "fields",
    [
        b"Content-Length: 5\r\nX-A: 1\r\nContent-Length: 5\r\n",
        b"Content-Length: 5, 5\r\nX-A: 1\r\n",
        b"Content-Length: 5\r\nX-A: 1\r\nContent-Length: 05, 5\r\n",
    ],
)
def test_equal_content_lengths_become_one_field_with_that_value(fields):
    # Passed on as received, the copies left the next hop to choose among them: one that
    # read the list differently glued this body onto the next pooled request.
    outcome = run(b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\nhello")
    assert outcome.status is None and body(outcome) == b"hello"
    assert head(outcome).headers.items() == [
        ("host", "h"), ("content-length", "5"), ("x-a", "1"),
    ]  # fmt: skip


def test_a_single_content_length_is_left_as_sent():
    outcome = run(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n\r\nhello")
    assert head(outcome).headers.get_list("content-length") == ["005"]


def test_response_content_lengths_become_one_field_and_lose_to_chunked():
    listed = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok"
    outcome = run(listed, kind="response", methods=["GET"])
    assert head(outcome).headers.get_list("content-length") == ["2"]
    assert body(outcome) == b"ok" and head(outcome).keep_alive is True
    both = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    outcome = run(both, kind="response", methods=["GET"])
    # RFC 9112 §6.3: the length chunked overrides must not be passed on.
    assert "content-length" not in head(outcome).headers
    assert body(outcome) == b"ok" and head(outcome).keep_alive is False


def test_transfer_encoding_in_http_1_0_is_400():
    assert status_of(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == 400


@pytest.mark.parametrize(
    "chunks",
    [
        b"\r\nabc\r\n",  # empty size
        b"xyz\r\nabc\r\n",  # not hex
        b"+3\r\nabc\r\n",  # sign
        b"-3\r\nabc\r\n",
        b"0x3\r\nabc\r\n",
        b" 3\r\nabc\r\n",  # leading whitespace
        b"00000000000000003\r\nabc\r\n",  # 17 hex digits
        b"3\r\nabcX\r\n",  # no CRLF after data
        b"3\r\nabc\n0\r\n\r\n",  # bare LF after data
        b"3\r\nabc\rX",
        b"3\n\r\nabc\r\n",  # bare LF in size line
        b"3;\r\nabc\r\n",  # extension without a name
        b"3;a=\"open\r\nabc\r\n",  # unterminated quoted string
        b"3;a b\r\nabc\r\n",
        b"3;a=\x00\r\nabc\r\n",
        b"3;" + b"a" * 5000 + b"\r\nabc\r\n",  # size line too long
        b"3;" + b"a" * 5000,  # size line too long, not even ended
    ],
)
def test_invalid_chunk_framing_is_400(chunks):
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    assert status_of(data) == 400


@pytest.mark.parametrize(
    "trailers, status",
    [
        (b"X: 1\r\n folded\r\n\r\n", 400),
        (b"X : 1\r\n\r\n", 400),
        (b"X: a\x00b\r\n\r\n", 400),
        (b"X: a\rb\r\n\r\n", 400),
        (b"\rX: 1\r\n\r\n", 400),
        (b"X: 1\n\n", 400),
        (b"X: " + b"a" * 200 + b"\r\n\r\n", 431),
    ],
)
def test_invalid_trailers(trailers, status):
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + trailers
    assert status_of(data, max_header_bytes=150) == status


@pytest.mark.parametrize(
    "data",
    [
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
        b"GET /\tx HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / http/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1\r\nHost: h\r\n\r\n",
        b"GET /\r\nHost: h\r\n\r\n",
        b"GE(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tcontinued\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\nb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nHost\r\n\r\n",  # a known name still needs a colon
        b"GET / HTTP/1.1\r\nHost: h\r\n: empty-name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX\xe9: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # 1.1 without Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\r\n\r\n",  # bare LF ends the request line
        b"GET / HTTP/1.1\rHost: h\r\n\r\n",  # bare CR
        b"GET / HTTP/1.1\r\nHost: h\r\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",  # LF-only head: rejected without waiting
    ],
)
def test_malformed_heads_are_400(data):
    assert status_of(data) == 400


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"HTTP/3.1"])
def test_unsupported_version_is_505(version):
    assert status_of(b"GET / " + version + b"\r\nHost: h\r\n\r\n") == 505


def test_header_block_over_limit_is_431_and_at_limit_is_accepted():
    base = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: "
    exact = base + b"a" * (200 - len(base) - 4) + b"\r\n\r\n"
    assert len(exact) == 200
    assert run(exact, max_header_bytes=200).status is None
    assert status_of(exact.replace(b"X-Pad: ", b"X-Pad: a"), max_header_bytes=200) == 431
    # An unterminated head is cut off as soon as it reaches the limit.
    assert status_of(base + b"a" * 500, max_header_bytes=200) == 431


def test_errors_are_sticky():
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
    for _ in range(2):
        with pytest.raises(ProtocolError) as info:
            parser.next_event()
        assert info.value.status == 400


def test_protocol_error_fields():
    exc = ProtocolError("too big", 431)
    assert (exc.message, exc.status) == ("too big", 431)
    assert ProtocolError("bad").status == 400
    assert isinstance(exc, Exception)


def test_byte_by_byte_head_parsing_stays_linear():
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-A: b\r\n" * 6000 + b"\r\n"
    parser = RequestParser()
    began = time.perf_counter()
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        event = parser.next_event()
    elapsed = time.perf_counter() - began
    assert type(event) is RequestHead and len(event.headers) == 6001
    assert elapsed < 2.0


# --- responses -----------------------------------------------------------------------------


def test_response_with_content_length():
    outcome = run(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", kind="response", methods=["GET"])
    assert outcome.events == [
        ResponseHead(200, "OK", "HTTP/1.1", Headers([("content-length", "2")]), True),
        Data(b"ok"),
        EndOfMessage(),
    ]


def test_chunked_response_with_trailers():
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=1\r\ndata\r\n0\r\nX-T: v\r\n\r\n"
    outcome = run(data, kind="response", methods=["POST"])
    assert body(outcome) == b"data"
    assert outcome.events[-1] == EndOfMessage(Headers([("x-t", "v")]))
    assert head(outcome).keep_alive is True


def test_a_chunk_takes_its_crlf_so_the_buffer_is_empty_between_chunks():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert type(parser.next_event()) is ResponseHead
    for piece in (b"event one", b"two"):
        parser.feed(b"%x\r\n%s\r\n" % (len(piece), piece))
        assert parser.next_event() == Data(piece)
        assert not parser.has_buffered_data
        assert parser.next_event() is NEED_DATA
    parser.feed(b"3\r\nabc")  # the CRLF comes later: checked then
    assert parser.next_event() == Data(b"abc")
    parser.feed(b"\r\n0\r\n\r\n")
    assert parser.next_event() == EndOfMessage()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert type(parser.next_event()) is ResponseHead


def test_chunk_data_followed_by_anything_but_crlf_is_refused():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY")
    assert type(parser.next_event()) is ResponseHead
    assert parser.next_event() == Data(b"abc")
    with pytest.raises(ProtocolError, match="not followed by CRLF"):
        parser.next_event()


def test_close_delimited_response_ends_at_eof():
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstream until close"
    unfinished = run(data, kind="response", methods=["GET"])
    assert type(unfinished.events[-1]) is Data
    outcome = run(data, eof=True, kind="response", methods=["GET"])
    assert head(outcome).keep_alive is False
    assert body(outcome) == b"stream until close"
    assert outcome.events[-2:] == [EndOfMessage(), CONNECTION_CLOSED]


@pytest.mark.parametrize(
    "status_line, method",
    [
        (b"HTTP/1.1 204 No Content", "DELETE"),
        (b"HTTP/1.1 304 Not Modified", "GET"),
        (b"HTTP/1.1 200 OK", "HEAD"),
    ],
)
def test_bodiless_responses_ignore_content_length(status_line, method):
    data = status_line + b"\r\nContent-Length: 10\r\n\r\n"
    second = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"
    outcome = run(data + second, kind="response", methods=[method, "GET"])
    assert [type(e) for e in outcome.events] == [
        ResponseHead, EndOfMessage, ResponseHead, Data, EndOfMessage
    ]  # fmt: skip
    assert head(outcome).keep_alive is True
    assert body(outcome) == b"z"


def test_100_then_200():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    outcome = run(data, kind="response", methods=["POST"])
    assert [type(e) for e in outcome.events] == [ResponseHead, ResponseHead, Data, EndOfMessage]
    assert [head(outcome, 0).status, head(outcome, 1).status] == [100, 200]
    assert head(outcome, 0).reason == "Continue"


def test_several_interim_responses_have_no_body():
    data = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\nContent-Length: 5\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    outcome = run(data, kind="response", methods=["GET"])
    assert [e.status for e in outcome.events[:3]] == [103, 102, 200]
    assert outcome.events[3] == EndOfMessage()


def test_101_then_trailing_bytes():
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"
    outcome = run(data, kind="response", methods=["GET"])
    assert [type(e) for e in outcome.events] == [ResponseHead, EndOfMessage]
    assert head(outcome).status == 101 and head(outcome).keep_alive is False
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(data)
    assert parser.next_event().status == 101
    assert parser.next_event() == EndOfMessage()
    assert parser.next_event() is NEED_DATA
    parser.feed(b"more")
    assert parser.next_event() is NEED_DATA
    assert parser.take_trailing() == b"\x81\x02himore"
    with pytest.raises(RuntimeError):
        parser.start("GET")


def test_connect_2xx_switches_to_tunnel():
    parser = ResponseParser()
    parser.start("CONNECT")
    parser.feed(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03")
    assert parser.next_event().status == 200
    assert parser.next_event() == EndOfMessage()
    assert parser.next_event() is NEED_DATA
    assert parser.take_trailing() == b"\x16\x03\x03"


def test_connect_refused_has_a_body():
    data = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope"
    outcome = run(data, kind="response", methods=["CONNECT"])
    assert body(outcome) == b"nope"


@pytest.mark.parametrize(
    "version, fields, expected",
    [
        (b"1.1", b"Content-Length: 0\r\n", True),
        (b"1.1", b"Connection: close\r\nContent-Length: 0\r\n", False),
        (b"1.0", b"Content-Length: 0\r\n", False),
        (b"1.0", b"Connection: keep-alive\r\nContent-Length: 0\r\n", True),
        (b"1.1", b"Transfer-Encoding: chunked\r\nContent-Length: 9\r\n", False),
    ],
)
def test_response_keep_alive(version, fields, expected):
    data = b"HTTP/" + version + b" 200 OK\r\n" + fields + b"\r\n0\r\n\r\n"
    assert head(run(data, kind="response", methods=["GET"])).keep_alive is expected


@pytest.mark.parametrize(
    "data, status",
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"HTTP/1.1 20 OK\r\n\r\n", 400),
        (b"HTTP/1.1 099 Odd\r\n\r\n", 400),
        (b"HTTP/2 200 OK\r\n\r\n", 400),
        (b"HTTP/2.0 200 OK\r\n\r\n", 505),
        (b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n", 400),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", 400),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_response_rejections(data, status):
    assert status_of(data, kind="response", methods=["GET"]) == status


def test_status_line_without_reason():
    for line in (b"HTTP/1.1 200", b"HTTP/1.1 200 "):
        outcome = run(line + b"\r\nContent-Length: 0\r\n\r\n", kind="response", methods=["GET"])
        assert (head(outcome).status, head(outcome).reason) == (200, "")


def test_response_eof_cases():
    assert run(b"", eof=True, kind="response", methods=["GET"]).events == [CONNECTION_CLOSED]
    assert status_of(b"HTTP/1.1 100 Continue\r\n\r\n", eof=True, kind="response", methods=["GET"]) == 400
    assert status_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", eof=True, kind="response", methods=["GET"]) == 400
    assert status_of(b"HTTP/1.1 200 O", eof=True, kind="response", methods=["GET"]) == 400


def test_response_parser_waits_for_start():
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert parser.next_event() is NEED_DATA
    assert parser.has_buffered_data
    parser.start("get")
    assert parser.next_event().status == 200
    with pytest.raises(RuntimeError):
        parser.start("GET")
    assert parser.next_event() == EndOfMessage()
    parser.feed_eof()
    assert parser.next_event() is CONNECTION_CLOSED


def test_response_head_over_limit_is_431():
    data = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 300 + b"\r\n\r\n"
    assert status_of(data, kind="response", methods=["GET"], max_header_bytes=100) == 431


# --- seeded fuzzing ------------------------------------------------------------------------

REQUEST_CORPUS = [
    GET,
    b"POST /v1/messages HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
    b"Content-Length: 13\r\n\r\n{\"a\": [1, 2]}",
    b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    b"4;e=1\r\nabcd\r\n3\r\nefg\r\n0\r\nT: 1\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
]

RESPONSE_CORPUS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nxx",
]

INSERTS = [b"\r", b"\n", b"\x00", b"\r\n", b" ", b"\t", b":", b";", b",", b"\x7f", b"\xff", b"0"]
FIELDS = [
    b"Content-Length: 3\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Host: other\r\n",
    b"Connection: close\r\n",
    b" folded\r\n",
]


def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if choice == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif choice == 1:
            data[pos:pos] = rng.choice(INSERTS)
        elif choice == 2:
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                i = rng.randrange(1, len(lines) - 1)
                lines.insert(i, lines[i])  # duplicate a line
                data = bytearray(b"\r\n".join(lines))
        elif choice == 3:
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                del lines[rng.randrange(1, len(lines) - 1)]
                data = bytearray(b"\r\n".join(lines))
        elif choice == 4:
            end = data.find(b"\r\n")
            if end >= 0:
                data[end + 2 : end + 2] = rng.choice(FIELDS)
        else:
            del data[pos:]
    return bytes(data)


def _check_sequence(events, kind):
    """Assert ``events`` is (head Data* EndOfMessage)* [head Data*] [CONNECTION_CLOSED]."""
    in_message = False
    expected = None
    received = 0
    head_type = RequestHead if kind == "request" else ResponseHead
    for index, event in enumerate(events):
        if event is CONNECTION_CLOSED:
            assert not in_message and index == len(events) - 1
        elif type(event) is head_type:
            assert not in_message
            interim = kind == "response" and 100 <= event.status < 200 and event.status != 101
            in_message = not interim
            expected = getattr(event, "content_length", None)
            received = 0
        elif type(event) is Data:
            assert in_message and event.data
            received += len(event.data)
        else:
            assert type(event) is EndOfMessage and in_message
            assert expected is None or received == expected
            in_message = False


ALLOWED_STATUSES = {400, 413, 431, 501, 505}


def _pieces(rng, data):
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 4))) if len(data) > 1 else []
    bounds = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("kind", ["request", "response"])
def test_fuzzed_input_only_has_documented_outcomes(kind):
    rng = random.Random(1234)
    corpus = REQUEST_CORPUS if kind == "request" else RESPONSE_CORPUS
    cls = RequestParser if kind == "request" else ResponseParser
    seen = set()
    for case in range(4000):
        data = _mutate(rng, rng.choice(corpus))
        eof = rng.random() < 0.5
        methods = None if kind == "request" else [rng.choice(["GET", "HEAD", "POST"])] * 4
        outcomes = []
        for pieces in ([data], _pieces(rng, data)):
            try:
                outcome, _ = _drive(lambda: cls(max_header_bytes=256), pieces, eof, methods)
            except Exception as exc:  # noqa: BLE001 - any exception escaping is the failure
                pytest.fail("case %d %r raised %r" % (case, data, exc))
            if outcome.status is not None:
                assert outcome.status in ALLOWED_STATUSES, (case, data, outcome.message)
            _check_sequence(outcome.events, kind)
            outcomes.append(outcome.key())
        assert outcomes[0] == outcomes[1], (case, data)
        seen.add(outcomes[0][1])
    # The mutations reach both successes and several kinds of rejection.
    assert None in seen and 400 in seen and len(seen) >= 3


# --- fast paths give exactly what the full grammar gives ---------------------------------

def _reference_request_head(block):
    """The request-head parse by the full grammar only (regex request line, checked
    fields, separate specials pass): what the fast paths must reproduce."""
    lines = _parser._split_block(block)
    method, target, version = _parser._request_line_checked(lines[0])
    items = _parser._check_fields(lines[1:])
    special = _parser._specials(items)
    hosts = special.get("host", ())
    if len(hosts) > 1:
        raise ProtocolError("more than one Host field")
    if not hosts and version == "HTTP/1.1":
        raise ProtocolError("HTTP/1.1 request without Host")
    connection = _parser._tokens(special.get("connection", ()))
    keep_alive = _parser._keep_alive(version, connection)
    upgrade = "upgrade" in connection and "upgrade" in special
    expect_continue = version == "HTTP/1.1" and "100-continue" in _parser._tokens(
        special.get("expect", ())
    )
    transfer = special.get("transfer-encoding")
    lengths = special.get("content-length")
    if transfer is not None:
        if lengths is not None:
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        if version == "HTTP/1.0":
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        _parser._is_chunked(transfer)
        framing, length = _parser._Framing.CHUNKED, None
    elif lengths is not None:
        framing, length = _parser._Framing.CONTENT_LENGTH, _parser._content_length(lengths)
        items = _single_length(items, length)
    else:
        framing, length = _parser._Framing.NONE, 0
    head = RequestHead(
        method, target, version, Headers.from_lowered(items), keep_alive,
        expect_continue, upgrade, length,
    )
    return head, framing, length


def _single_length(items, length):
    """Reference: the fields with every Content-Length field but the first dropped, and
    that one holding ``length`` when the values were repeated or a list."""
    lengths = [value for name, value in items if name == "content-length"]
    if len(lengths) == 1 and "," not in lengths[0]:
        return items
    first = [name for name, _ in items].index("content-length")
    kept = [item for item in items if item[0] != "content-length"]
    kept.insert(first, ("content-length", str(length)))
    return kept


def _outcome(func, *args):
    try:
        return ("ok", func(*args))
    except ProtocolError as exc:
        return ("error", exc.status, exc.message)


_REQUEST_LINES = [
    "GET / HTTP/1.1",
    "POST /v1/chat/completions?x=1 HTTP/1.0",
    "HEAD * HTTP/1.1",
    "CONNECT example.com:443 HTTP/1.1",
    "OPTIONS * HTTP/1.1",
    "PATCH /a HTTP/1.1",
    "BREW /pot HTTP/1.1",
    "get / HTTP/1.1",
    "GET /a\tb HTTP/1.1",
    "GET \t HTTP/1.1",
    "GET  / HTTP/1.1",
    "GET / HTTP/1.1 ",
    "GET /  HTTP/1.1",
    "GET / HTTP/2.0",
    "GET / HTTP/1.2",
    "GET / HTTP/0.9",
    "GET / http/1.1",
    "GET / HTTP/1.1x",
    "GET /",
    "GET",
    "",
    " GET / HTTP/1.1",
    "G@T / HTTP/1.1",
    "GET /caf\xe9 HTTP/1.1",
]


@pytest.mark.parametrize("line", _REQUEST_LINES)
def test_request_line_fast_path_matches_the_grammar(line):
    assert _outcome(_parser._request_line, line) == _outcome(_parser._request_line_checked, line)


_FIELD_BLOCKS = [
    [],
    ["Host: a"],
    ["Host: a", "Content-Length: 5", "Connection: keep-alive, Upgrade", "Upgrade: websocket"],
    ["host:a", "HOST: b"],
    ["Host: a", "Expect: 100-continue", "Content-Length: 3"],
    ["Host: a", "Transfer-Encoding: chunked", "X-Custom-Field-%d: 1"],
    ["Host: a", "Content-Length: 1", "Content-Length: 1"],
    ["Host: a", " folded"],
    ["Host: a", "\tfolded"],
    ["Host: a", "no colon here"],
    ["Host : a"],
    ["Bad@Name: a"],
    ["Host: a:b:c", "Empty:", "Spaces:   v  \t"],
    [":empty-name"],
]


@pytest.mark.parametrize("lines", _FIELD_BLOCKS)
def test_fields_and_specials_in_one_pass_match_the_checked_path(lines):
    lines = [line.replace("%d", str(time.monotonic_ns())) for line in lines]

    def reference(lines):
        items = _parser._check_fields(lines)
        return items, _parser._specials(items)

    for _ in range(2):  # the second round runs with every valid name cached
        expected = _outcome(reference, list(lines))
        assert _outcome(_parser._parse_fields_and_specials, list(lines)) == expected
        if expected[0] == "ok":
            assert _parser._parse_fields(list(lines)) == expected[1][0]


_HEADS = [
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:18997",
    b"GET / HTTP/1.0",
    b"GET / HTTP/1.0\r\nConnection: keep-alive",
    b"GET / HTTP/1.1",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nExpect: 100-Continue",
    b"POST / HTTP/1.0\r\nContent-Length: 12\r\nExpect: 100-continue",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX: y\r\nContent-Length: 003",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc",
    b"BREW /pot HTTP/1.1\r\nHost: a",
    b"GET /a\tb HTTP/1.1\r\nHost: a",
    b"GET / HTTP/2.0\r\nHost: a",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b",
]


@pytest.mark.parametrize("block", _HEADS)
def test_request_head_fast_paths_match_the_full_grammar(block):
    for _ in range(2):  # cold and warm name cache
        assert _outcome(_parser._parse_request_head, block) == _outcome(
            _reference_request_head, block
        )


def test_bodiless_requests_share_a_reader_and_each_get_their_own_end():
    parser = RequestParser()
    parser.feed(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    )
    events = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            break
        events.append(event)
    assert [type(e) for e in events] == [
        RequestHead, EndOfMessage, RequestHead, EndOfMessage, RequestHead, Data, EndOfMessage,
    ]
    assert [e.target for e in events if type(e) is RequestHead] == ["/a", "/b", "/c"]
    assert events[1] is not events[3]
    assert events[5] == Data(b"hi")


_STATUS_LINES = [
    "HTTP/1.1 200 OK",
    "HTTP/1.0 404 Not Found",
    "HTTP/1.1 200",
    "HTTP/1.1 200 ",
    "HTTP/1.1 100 Continue",
    "HTTP/1.1 999 x",
    "HTTP/1.1 503  two spaces\tand a tab",
    "HTTP/1.1 099 Low",
    "HTTP/1.1 000",
    "HTTP/1.1 20 OK",
    "HTTP/1.1 2000 OK",
    "HTTP/1.1 2x0 OK",
    "HTTP/1.1 \xb200 OK",
    "HTTP/1.1  200 OK",
    "HTTP/1.1 200\tOK",
    "HTTP/2.0 200 OK",
    "HTTP/1.2 200 OK",
    "HTTP/2 200 OK",
    "http/1.1 200 OK",
    "HTTP/1.1",
    "",
]


@pytest.mark.parametrize("line", _STATUS_LINES)
def test_status_line_fast_path_matches_the_grammar(line):
    assert _outcome(_parser._status_line, line) == _outcome(_parser._status_line_checked, line)


@pytest.mark.parametrize(
    "value",
    ["0", "5", "0005", "1" * 18, "1" * 19, "", " 5", "5 ", "+5", "-5", "1_0", "\u0661\u0662",
     "\xb2", "5,5", "0x10"],
)
def test_content_length_fast_path_matches_the_checked_path(value):
    # A repeated equal value skips the single-value fast path, so it gives the checked
    # path's answer for the same number.
    assert _outcome(_parser._content_length, [value]) == _outcome(
        _parser._content_length, [value, value]
    )


def _reference_response_head(block, method):
    """The response-head parse by the full grammar only: what the fast paths must give."""
    lines = _parser._split_block(block)
    version, status, reason = _parser._status_line_checked(lines[0])
    items = _parser._check_fields(lines[1:])
    special = _parser._specials(items)
    keep_alive = _parser._keep_alive(version, _parser._tokens(special.get("connection", ())))
    head = ResponseHead(status, reason, version, Headers.from_lowered(items), keep_alive)
    if status == 101 or (method == "CONNECT" and 200 <= status < 300):
        head.keep_alive = False
        return head, None, None
    if status < 200 or status in (204, 304) or method == "HEAD":
        return head, _parser._Framing.NONE, None
    transfer = special.get("transfer-encoding")
    lengths = special.get("content-length")
    if transfer is not None:
        _parser._is_chunked(transfer)
        if lengths is not None or version == "HTTP/1.0":
            head.keep_alive = False
        if lengths is not None:
            head.headers = Headers.from_lowered([i for i in items if i[0] != "content-length"])
        return head, _parser._Framing.CHUNKED, None
    if lengths is not None:
        length = _parser._content_length(lengths)
        head.headers = Headers.from_lowered(_single_length(items, length))
        return head, _parser._Framing.CONTENT_LENGTH, length
    head.keep_alive = False
    return head, _parser._Framing.CLOSE_DELIMITED, None


_RESPONSE_HEADS = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 600",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 3",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\nContent-Length: 02, 2",
    b"HTTP/1.1 099 Low",
    b"HTTP/2.0 200 OK",
    b"HTTP/1.1 200 OK\r\n folded: x",
    b"HTTP/1.1 200 OK\r\nX: a\x00b",
    b"HTTP/1.1 200 OK\r\nno colon",
]


@pytest.mark.parametrize("block", _RESPONSE_HEADS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "CONNECT"])
def test_response_head_fast_paths_match_the_full_grammar(block, method):
    for _ in range(2):  # cold and warm name cache
        assert _outcome(_parser._parse_response_head, block, method) == _outcome(
            _reference_response_head, block, method
        )


def test_content_length_body_taken_whole_or_cut_at_its_end():
    parser = RequestParser()
    parser.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    assert type(parser.next_event()) is RequestHead
    assert parser.next_event() == Data(b"ab")  # all that is buffered: less than the body
    assert parser.next_event() is NEED_DATA
    parser.feed(b"cdeGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parser.next_event() == Data(b"cde")  # cut where the body ends
    assert parser.next_event() == EndOfMessage()
    assert parser.next_event().target == "/b"


def test_start_is_refused_until_the_response_body_ends():
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no")
    assert parser.next_event().status == 200
    assert parser.next_event() == Data(b"o")
    with pytest.raises(RuntimeError):
        parser.start("GET")
    parser.feed(b"k")
    assert parser.next_event() == Data(b"k")
    assert parser.next_event() == EndOfMessage()
    parser.start("GET")
    assert parser.next_event() is NEED_DATA
