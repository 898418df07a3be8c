"""Calibration, not part of cliproxy: the least work the targets describe, in Python.

Strategy: the issue's targets are for a proxy that parses the body for the model and swaps
the credentials. This relay does exactly that much and nothing more, from
``asyncio.Protocol`` callbacks (no task, no future, no stream objects): it splits each
head into fields, checks the client key against a set, reads the Content-Length body, runs
the one ``json.loads`` to find the model, writes a new upstream head (hop-by-hop fields and
the client's credentials dropped, the upstream key and Host added) with the body, then
parses the upstream's status line and fields and writes a rebuilt head with the
Content-Length answer. No validation beyond that, no chunked framing, no pooling (one
upstream connection per client connection, like ``pump.py``), no failover, no logging.
Run the bench against it with

    python3 bench/bench.py --proxy bench/lean.py

Its CPU per request, minus ``pump.py``'s, is what the described work costs in CPython on
this machine before any of cliproxy's own structure.

With ``--strict`` the heads are parsed and written by cliproxy's own sans-IO parser and
writer (imported from this source tree), so every request and answer is checked as SPEC
§4 requires and bodies are relayed event by event as they are parsed: the same relay, plus
the cost of a conforming HTTP/1.1 implementation; a chunked answer (the trickle
scenario's upstream, bench/trickle.py) is relayed chunk by chunk as each arrives. Takes the
bench's ``--config PATH`` (``port``, ``api-keys``, ``claude-api-key``,
``openai-compatibility``, ``ampcode.upstream-url``); ignores the rest. Every connection
goes to ``ampcode.upstream-url`` (bench.py points it at the upstream of the scenario), at
the path the provider entry serving the request's model names: its ``base-url`` path plus
``/v1/messages`` (Anthropic) or ``/chat/completions`` (OpenAI-compatible).

A model served by an ``openai-compatibility`` entry is translated: the upstream is asked
for its OpenAI Chat stream and the client answered an Anthropic stream, with the least
work translation needs, per event one ``json.loads`` of the chunk and one Anthropic delta
written from a template and the text's JSON string (no validation, no tool calls, no
usage, no error handling), sent chunked as each read brings whole events.
"""

import asyncio
import json
import os
import sys
from json.encoder import encode_basestring
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"))
CREDENTIALS = frozenset(("authorization", "x-api-key", "x-goog-api-key"))
UNSENT = HOP_BY_HOP | CREDENTIALS
# cliproxy's sans-IO parser and writer modules, imported for --strict only (see main).
http_parser = http_writer = None


def parse_head(block):
    """(start line, [(lowercase name, value)], {lowercase name: value}) of a head block."""
    lines = block.decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.append((name.lower(), value.strip()))
    return lines[0], fields, dict(fields)


def client_key(fields):
    key = fields.get("x-api-key")
    if key is None:
        key = fields.get("authorization", "")[7:]
    return key


# A model no provider entry names: the Anthropic path at the root, as nginx serves it.
ANTHROPIC_ROUTE = ("/v1/messages", False)


def model_routes(config):
    """{model: (upstream path, translated)} from the config's provider entries: an
    Anthropic entry's ``base-url`` path (without a trailing ``/v1``) + ``/v1/messages``;
    an OpenAI-compatible entry's + ``/chat/completions``, translated."""
    routes = {}
    for entry in config.get("claude-api-key", []):
        base = urlsplit(entry["base-url"]).path.rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        for model in entry.get("models", []):
            routes[model["name"]] = (base + "/v1/messages", False)
    for entry in config.get("openai-compatibility", []):
        base = urlsplit(entry["base-url"]).path.rstrip("/")
        for model in entry.get("models", []):
            routes[model["name"]] = (base + "/chat/completions", True)
    return routes


_OPENING = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_lean","type":"message",'
    b'"role":"assistant","model":"lean","content":[],"stop_reason":null,"usage":{"input_tokens":0,'
    b'"output_tokens":0}}}\n\nevent: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
_DELTA = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%s}}\n\n'
_CLOSING = (
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":0}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
)


class ChatToAnthropic:
    """OpenAI Chat SSE bytes in, Anthropic SSE bytes out: whole events only, one
    ``json.loads`` each, text deltas only."""

    def __init__(self):
        self.pending = b""
        self.opened = False

    def feed(self, data):
        data = self.pending + data
        end = data.rfind(b"\n\n") + 2
        self.pending = data[end:]
        out = [] if self.opened else [_OPENING]
        self.opened = True
        for block in data[:end].split(b"\n\n"):
            if block.startswith(b"data: {"):
                choices = json.loads(block[6:])["choices"]
                text = choices[0]["delta"].get("content") if choices else None
                if text:
                    out.append((_DELTA % encode_basestring(text)).encode("utf-8"))
        return b"".join(out)

    def close(self):
        return _CLOSING


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def encode_head(start_line, fields, extra):
    lines = [start_line]
    lines.extend("%s: %s" % field for field in fields if field[0] not in UNSENT)
    lines.extend(extra)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


class Upstream(asyncio.Protocol):
    """The upstream side: parses each answer's head and relays a rebuilt one."""

    def __init__(self, client):
        self.client = client
        self.buffer = b""
        self.remaining = None
        self.translator = None  # a ChatToAnthropic for the translated scenario

    def data_received(self, data):
        if self.remaining is None:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status, fields, named = parse_head(self.buffer[:end])
            data = self.buffer[end + 4:]
            self.buffer = b""
            self.remaining = int(named.get("content-length", "0"))
            framing = ("transfer-encoding: chunked" if self.translator else
                       "content-length: %d" % self.remaining)
            self.client.transport.write(encode_head(status, fields, (framing,)))
        self.remaining -= len(data)
        if self.translator is None:
            self.client.transport.write(data)
        else:
            out = self.translator.feed(data)
            if self.remaining <= 0:
                out += self.translator.close()
                self.translator = None
            self.client.transport.write(chunk(out) + (b"0\r\n\r\n" if self.remaining <= 0 else b""))
        if self.remaining <= 0:
            self.remaining = None

    def connection_lost(self, exc):
        self.client.transport.close()


class Client(asyncio.Protocol):
    """The client side: one request at a time, forwarded once its body is whole."""

    upstream_class = Upstream

    def __init__(self, settings):
        self.settings = settings
        self.buffer = b""
        self.head = None
        self.upstream = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        loop = asyncio.get_running_loop()
        opening = loop.create_task(loop.create_connection(
            lambda: self.upstream_class(self), *self.settings["address"]))
        opening.add_done_callback(self.opened)

    def opened(self, opening):
        self.upstream = opening.result()[0]
        self.forward()

    def data_received(self, data):
        self.buffer += data
        self.forward()

    def forward(self):
        if self.upstream is None:
            return
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = parse_head(self.buffer[:end])
            self.buffer = self.buffer[end + 4:]
        line, fields, named = self.head
        length = int(named.get("content-length", "0"))
        if len(self.buffer) < length:
            return
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        self.head = None
        if client_key(named) not in self.settings["client_keys"]:
            self.transport.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
            return
        path, translated = self.settings["routes"].get(json.loads(body)["model"], ANTHROPIC_ROUTE)
        method, _, _ = line.split(" ", 2)
        self.upstream.get_protocol().translator = ChatToAnthropic() if translated else None
        self.upstream.write(encode_head("%s %s HTTP/1.1" % (method, path), fields, (
            "host: %s" % self.settings["host"], "x-api-key: %s" % self.settings["key"],
            "content-length: %d" % length)) + body)

    def connection_lost(self, exc):
        if self.upstream is not None:
            self.upstream.close()


class StrictUpstream(Upstream):
    """``Upstream`` with cliproxy's ``ResponseParser`` and ``encode_response_head``."""

    def __init__(self, client):
        super().__init__(client)
        self.parser = http_parser.ResponseParser()
        self.parser.start("POST")
        # The answer has no Content-Length (chunked upstream): relayed chunked, piece by piece.
        self.chunked = False

    def data_received(self, data):
        parser = self.parser
        parser.feed(data)
        # What one read brings goes out in one write (no delay: it is all here already).
        out = []
        translator = self.translator
        while True:
            event = parser.next_event()
            kind = type(event)
            if kind is http_parser.Data:
                if translator is not None:
                    out.append(http_writer.encode_chunk(translator.feed(event.data)))
                else:
                    out.append(http_writer.encode_chunk(event.data) if self.chunked else event.data)
            elif kind is http_parser.ResponseHead:
                fields = [f for f in event.headers if f[0] not in UNSENT]
                length = event.headers.get("content-length")
                self.chunked = translator is not None or length is None
                if self.chunked:
                    fields.append(("transfer-encoding", "chunked"))
                else:
                    fields.append(("content-length", length))
                out.append(http_writer.encode_response_head(event.status, fields))
            elif kind is http_parser.EndOfMessage:
                if translator is not None:
                    out.append(http_writer.encode_chunk(translator.close()))
                    self.translator = translator = None
                if self.chunked:
                    out.append(http_writer.LAST_CHUNK)
                parser.start("POST")
            else:
                break
        if out:
            self.client.transport.write(b"".join(out))


class StrictClient(Client):
    """``Client`` with cliproxy's ``RequestParser`` and ``encode_request_head``."""

    upstream_class = StrictUpstream

    def __init__(self, settings):
        super().__init__(settings)
        self.parser = http_parser.RequestParser()
        self.parts = []

    def data_received(self, data):
        self.parser.feed(data)
        self.forward()

    def forward(self):
        if self.upstream is None:
            return
        while True:
            event = self.parser.next_event()
            kind = type(event)
            if kind is http_parser.RequestHead:
                self.head = event
            elif kind is http_parser.Data:
                self.parts.append(event.data)
            elif kind is http_parser.EndOfMessage:
                self.send(self.head, b"".join(self.parts))
                self.parts = []
            else:
                return

    def send(self, head, body):
        headers = head.headers
        if client_key(headers) not in self.settings["client_keys"]:
            self.transport.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
            return
        path, translated = self.settings["routes"].get(json.loads(body)["model"], ANTHROPIC_ROUTE)
        self.upstream.get_protocol().translator = ChatToAnthropic() if translated else None
        fields = [f for f in headers if f[0] not in UNSENT]
        fields.extend((("host", self.settings["host"]), ("x-api-key", self.settings["key"]),
                       ("content-length", str(len(body)))))
        self.upstream.write(http_writer.encode_request_head(head.method, path, fields) + body)


async def serve(config, client_class):
    upstream = urlsplit(config["ampcode"]["upstream-url"])
    settings = {
        "address": (upstream.hostname, upstream.port),
        "host": upstream.netloc,
        "client_keys": frozenset(config["api-keys"]),
        "key": config["claude-api-key"][0]["api-key"],
        "routes": model_routes(config),
    }
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: client_class(settings), "127.0.0.1", config["port"])
    async with server:
        await server.serve_forever()


def run_with_config(serve, argv, *arguments):
    """Run ``serve(config, *arguments)`` with the bench's config (``--config PATH`` among
    ``argv``) until interrupted: the calibration programs' common start."""
    with open(argv[argv.index("--config") + 1], encoding="utf-8") as handle:
        config = json.load(handle)
    try:
        asyncio.run(serve(config, *arguments))
    except KeyboardInterrupt:
        pass


def main(argv):
    client_class = Client
    if "--strict" in argv:
        global http_parser, http_writer
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from cliproxy.http import parser, writer
        http_parser, http_writer = parser, writer
        client_class = StrictClient
    run_with_config(serve, argv, client_class)


if __name__ == "__main__":
    main(sys.argv)
