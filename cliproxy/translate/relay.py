"""Relaying an SSE stream through a protocol's ``StreamRewriter``.

Strategy: rewriting is needed in a few events of a stream (the model in Anthropic's
``message_start``, a tool block's name), not in the hundreds of deltas between them. The
relay cuts whole events out of the stream in runs without parsing them, looks for the
rewriter's ``markers`` (bytes present in every event it may change), and parses only up
to the end of the last event holding one; the rest of the run goes out as received. Pure:
bytes in, bytes out.
"""

from cliproxy.http.sse import EventRuns, SSEParser, run_events


class EventRelay:
    """Relays an SSE stream through a protocol's ``StreamRewriter``.

    Whole events are cut out in runs (``EventRuns``); the part of a run after its last
    marked event (most of a stream: deltas) goes out as received, without parsing; the
    part up to it is parsed and rewritten event by event. Streams with CR line endings
    take the parser for everything. Either way an event split across reads goes out
    whole, never held back longer than its own last byte.
    """

    __slots__ = ("_rewriter", "_runs", "_parser", "tap")

    def __init__(self, rewriter, tap=None):
        self._rewriter = rewriter
        self._runs = EventRuns()
        self._parser = None
        # A ``usage.UsageTap`` shown every run that holds its key (None: no accounting).
        self.tap = tap

    def feed(self, chunk):
        if self._parser is None:
            try:
                run = self._runs.feed(chunk)
            except ValueError:
                self._parser = SSEParser()
                return self._rewrite(self._parser.feed(self._runs.flush() + chunk))
            return self._relay_run(run)
        return self._rewrite(self._parser.feed(chunk))

    def _relay_run(self, run):
        """A run of whole LF-delimited events: parsed up to the end of the last event
        holding a marker, passed as received after it."""
        tap = self.tap
        if tap is not None and tap.key in run:
            tap.take(run)
        last = max([run.rfind(marker) for marker in self._rewriter.markers] or [-1])
        if last < 0:
            return run
        end = run.find(b"\n\n", last) + 2
        head = self._rewritten(run_events(run[:end]))
        return head + run[end:] if end < len(run) else head

    def flush(self):
        if self._parser is None:
            rest = self._runs.flush()
            if not rest:
                return b""  # the stream ended with its last event's blank line, as usual
            parser = SSEParser()
            return self._rewrite(parser.feed(rest) + parser.flush())
        return self._rewrite(self._parser.flush())

    def usage(self):
        """The provider's token counts the tap saw (None without a tap or counts)."""
        return None if self.tap is None else self.tap.usage()

    def close(self):
        """Nothing: a relayed stream has no closing events of its own (the pipelines'
        common interface; a translated stream writes its closing events here)."""
        return b""

    def _rewrite(self, events):
        """``events`` (from the parser: not seen by the tap yet) rewritten."""
        tap = self.tap
        if tap is not None:
            for item in events:
                if tap.key in item.raw:
                    tap.take(item.raw.replace(b"\r\n", b"\n"))
        return self._rewritten(events)

    def _rewritten(self, events):
        event = self._rewriter.event
        return b"".join([event(item) for item in events])
