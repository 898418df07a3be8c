"""Relaying an SSE stream through a protocol's ``StreamRewriter``.

Strategy: rewriting is needed in a few events of a stream (the model in Anthropic's
``message_start``, a tool block's name), not in the hundreds of deltas between them. The
relay cuts whole events out of the stream in runs without parsing them, asks the rewriter
whether a run may hold anything to change (a substring check), and parses only the runs
that may. Pure: bytes in, bytes out.
"""

from cliproxy.http.sse import EventRuns, SSEParser


class EventRelay:
    """Relays an SSE stream through a protocol's ``StreamRewriter``.

    Whole events are cut out in runs (``EventRuns``); a run the rewriter does not want
    (most of a stream: deltas) goes out as received, without parsing; a run it wants is
    parsed and rewritten event by event. Streams with CR line endings take the parser
    for everything. Either way an event split across reads goes out whole, never held
    back longer than its own last byte.
    """

    __slots__ = ("_rewriter", "_runs", "_parser")

    def __init__(self, rewriter):
        self._rewriter = rewriter
        self._runs = EventRuns()
        self._parser = None

    def feed(self, chunk):
        if self._parser is None:
            try:
                run = self._runs.feed(chunk)
            except ValueError:
                self._parser = SSEParser()
                return self._rewrite(self._parser.feed(self._runs.flush() + chunk))
            if not run or not self._rewriter.wants(run):
                return run
            return self._rewrite(SSEParser().feed(run))
        return self._rewrite(self._parser.feed(chunk))

    def flush(self):
        if self._parser is None:
            parser = SSEParser()
            return self._rewrite(parser.feed(self._runs.flush()) + parser.flush())
        return self._rewrite(self._parser.flush())

    def _rewrite(self, events):
        event = self._rewriter.event
        return b"".join([event(item) for item in events])
