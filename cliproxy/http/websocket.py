"""WebSocket upgrades: recognising and validating the handshake, and the two-way byte pipe.

Strategy: the proxy never parses WebSocket frames. It checks the client's opening handshake
(RFC 6455 §4.2.1) so that a malformed upgrade is refused with a 400 before anything is sent
upstream, relays the upstream's ``101``, and then copies bytes both ways with ``pipe``.

``pipe`` runs one copy task per direction and stops at the first end of either: EOF, a
socket error, or cancellation of ``pipe`` itself. It then cancels and awaits both copy
tasks (none outlives it) and closes both connections. A WebSocket ends with its own closing
handshake carried inside the byte stream, so a TCP half-close is not kept open. Closing is
bounded: a peer that stops reading cannot hold a connection open (``transport.close``
waits to flush its buffer), so after ``CLOSE_TIMEOUT`` the transport is aborted.
"""

import asyncio
import base64
import binascii
import hashlib
import logging

from cliproxy.errors import BadRequest

__all__ = ["is_websocket_upgrade", "validate_upgrade", "accept_value", "pipe"]

log = logging.getLogger("cliproxy.http.websocket")

# RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key before hashing.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WEBSOCKET_VERSION = "13"  # RFC 6455 §4.2.1 item 6
KEY_BYTES = 16  # RFC 6455 §4.2.1 item 5: the key is base64 of a 16-byte nonce
READ_SIZE = 64 * 1024  # bytes per read in each direction of the pipe
CLOSE_TIMEOUT = 5.0  # seconds to wait for a closing transport before aborting it


def is_websocket_upgrade(headers):
    """True when ``headers`` ask for a WebSocket upgrade: an ``Upgrade`` token
    ``websocket`` (any case, RFC 6455 §4.2.1 item 3) and a ``Connection`` token
    ``upgrade`` (item 4)."""
    upgrade = headers.get_list("upgrade")
    if not any(token == "websocket" or token.startswith("websocket/") for token in upgrade):
        return False
    return "upgrade" in headers.get_list("connection")


def validate_upgrade(method, headers):
    """Check a client's opening handshake (RFC 6455 §4.2.1); return ``None`` when valid.

    Raises ``BadRequest`` naming what is wrong: the method is not GET, the ``Upgrade`` or
    ``Connection`` tokens are missing, ``Sec-WebSocket-Key`` is absent, repeated or not the
    base64 of 16 bytes, or ``Sec-WebSocket-Version`` is not 13 (that error carries a
    ``Sec-WebSocket-Version: 13`` header, RFC 6455 §4.4).
    """
    if method != "GET":
        raise BadRequest("WebSocket upgrade must use GET, not %s" % (method[:16],))
    if not is_websocket_upgrade(headers):
        raise BadRequest(
            "WebSocket upgrade needs 'Upgrade: websocket' and 'Connection: Upgrade' headers"
        )
    keys = headers.get_all("sec-websocket-key")
    if len(keys) != 1:
        raise BadRequest(
            "WebSocket upgrade needs exactly one Sec-WebSocket-Key header, got %d" % len(keys)
        )
    if not _is_valid_key(keys[0].strip()):
        raise BadRequest("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")
    versions = headers.get_all("sec-websocket-version")
    if len(versions) != 1 or versions[0].strip() != WEBSOCKET_VERSION:
        raise BadRequest(
            "Sec-WebSocket-Version must be 13",
            headers=(("sec-websocket-version", WEBSOCKET_VERSION),),
        )


def _is_valid_key(key):
    try:
        nonce = base64.b64decode(key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return False
    return len(nonce) == KEY_BYTES


def accept_value(key):
    """The ``Sec-WebSocket-Accept`` value answering ``key`` (RFC 6455 §4.2.2 item 5.4)."""
    digest = hashlib.sha1((key.strip() + WEBSOCKET_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


async def pipe(reader_a, writer_a, reader_b, writer_b, a_to_b=b"", b_to_a=b""):
    """Copy bytes A→B and B→A until either side ends, then close both sides.

    ``a_to_b`` and ``b_to_a`` are written first (bytes that arrived with the handshake).
    Returns normally when a side reaches EOF or fails with a socket error; re-raises any
    other error of a copy task. Cancelling ``pipe`` also closes both sides. When ``pipe``
    returns or raises, both copy tasks are finished and both writers closed.
    """
    try:
        if not await _write_initial(writer_b, a_to_b) or not await _write_initial(
            writer_a, b_to_a
        ):
            return
        tasks = [
            asyncio.ensure_future(_copy(reader_a, writer_b, "a->b")),
            asyncio.ensure_future(_copy(reader_b, writer_a, "b->a")),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        await asyncio.gather(_close(writer_a), _close(writer_b))


async def _write_initial(writer, data):
    """Write ``data`` if any; False when the peer is already gone."""
    if not data:
        return True
    try:
        writer.write(data)
        await writer.drain()
    except OSError as exc:
        log.debug("websocket pipe: initial write failed: %s", exc)
        return False
    return True


async def _copy(reader, writer, direction):
    """Copy until EOF or a socket error (both are a normal end of a tunnel)."""
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except OSError as exc:
        log.debug("websocket pipe %s ended: %s", direction, exc)


async def _close(writer):
    """Close ``writer`` and wait for it, aborting a transport that does not close in time;
    never raises (except ``CancelledError``)."""
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except asyncio.TimeoutError:
        writer.transport.abort()
    except Exception as exc:  # the peer may have reset the connection already
        log.debug("websocket pipe: close failed: %s", exc)
