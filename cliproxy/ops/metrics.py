"""Prometheus metrics, rendered in the text exposition format (version 0.0.4).

Strategy: a handful of counters and histograms kept in plain dicts keyed by label
tuples. Everything runs on the event loop thread, so updates need no lock; rendering
walks the dicts once per scrape.
"""

from bisect import bisect_left as _bisect_left

# Seconds; covers a fast local model's first token up to a long agent turn.
# The token counts of a usage row, in the ledger's order after the call count.
_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Histogram:
    __slots__ = ("buckets", "counts", "total", "count")

    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value):
        self.counts[_bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


def _labels(names, values):
    if not names:
        return ""
    pairs = ",".join(
        '%s="%s"' % (name, str(value).replace("\\", "\\\\").replace('"', '\\"'))
        for name, value in zip(names, values)
    )
    return "{%s}" % pairs


class Metrics:
    """The proxy's metrics. ``open_streams`` is read from the server at render time."""

    def __init__(self):
        self.requests = {}  # (route, status) -> count
        self.upstream_latency = {}  # (route,) -> Histogram
        self.upstream_ttfb = {}  # (route,) -> Histogram
        self.reloads = {"ok": 0, "error": 0}
        self.config_errors = 0
        self.upstream_attempts = {}  # (provider, outcome) -> count
        self.open_streams = lambda: 0
        self.usage = None  # an ``ops.usage.UsageLedger``: its counts are rendered too

    # The three updates below run on every request. A subscript in ``try`` is no call
    # where ``.get`` is one, and a missing key is met once per label set.

    def count_request(self, route, status):
        key = (route, status)
        try:
            self.requests[key] += 1
        except KeyError:
            self.requests[key] = 1

    def observe_upstream(self, route, ttfb, total):
        for table, value in ((self.upstream_ttfb, ttfb), (self.upstream_latency, total)):
            if value is None:
                continue
            try:
                histogram = table[route]
            except KeyError:
                histogram = table[route] = Histogram()
            histogram.observe(value)

    def count_attempt(self, provider, outcome):
        key = (provider, outcome)
        try:
            self.upstream_attempts[key] += 1
        except KeyError:
            self.upstream_attempts[key] = 1

    def count_reload(self, ok, errors=0):
        self.reloads["ok" if ok else "error"] += 1
        self.config_errors += errors

    def render(self):
        """The exposition text."""
        out = []
        self._counter(
            out,
            "cliproxy_requests_total",
            "Requests answered, by route type and status.",
            ("route", "status"),
            self.requests,
        )
        self._counter(
            out,
            "cliproxy_upstream_attempts_total",
            "Upstream attempts by provider and outcome.",
            ("provider", "outcome"),
            self.upstream_attempts,
        )
        self._histograms(
            out,
            "cliproxy_upstream_latency_seconds",
            "Time from sending a request upstream to the end of its response.",
            self.upstream_latency,
        )
        self._histograms(
            out,
            "cliproxy_upstream_ttfb_seconds",
            "Time from sending a request upstream to the response head.",
            self.upstream_ttfb,
        )
        out.append("# HELP cliproxy_open_streams Responses currently streaming.")
        out.append("# TYPE cliproxy_open_streams gauge")
        out.append("cliproxy_open_streams %d" % self.open_streams())
        self._counter(
            out,
            "cliproxy_config_reloads_total",
            "Config reloads by result.",
            ("result",),
            {(key,): value for key, value in self.reloads.items()},
        )
        out.append("# HELP cliproxy_config_errors_total Errors found in rejected config files.")
        out.append("# TYPE cliproxy_config_errors_total counter")
        out.append("cliproxy_config_errors_total %d" % self.config_errors)
        if self.usage is not None:
            self._usage(out, self.usage.metric_rows())
        return ("\n".join(out) + "\n").encode("utf-8")

    @classmethod
    def _usage(cls, out, rows):
        """The usage ledger's counts (label sets bounded by the ledger)."""
        names = ("requested_model", "served_model", "provider", "client", "route", "status")
        calls = {labels: counts[0] for labels, counts in rows}
        cls._counter(out, "cliproxy_usage_requests_total",
                     "Answered model calls, by model asked for and served, provider, client, route, status.",
                     names, calls)
        tokens = {}
        for labels, counts in rows:
            for kind, value in zip(_TOKEN_KINDS, counts[1:]):
                tokens[labels + (kind,)] = value
        cls._counter(out, "cliproxy_usage_tokens_total",
                     "Tokens of answered model calls as the providers counted them, by kind.",
                     names + ("kind",), tokens)

    @staticmethod
    def _counter(out, name, help_text, label_names, table):
        out.append("# HELP %s %s" % (name, help_text))
        out.append("# TYPE %s counter" % name)
        for key in sorted(table, key=str):
            out.append("%s%s %d" % (name, _labels(label_names, key), table[key]))

    @staticmethod
    def _histograms(out, name, help_text, table):
        out.append("# HELP %s %s" % (name, help_text))
        out.append("# TYPE %s histogram" % name)
        for route in sorted(table):
            histogram = table[route]
            cumulative = 0
            for bound, count in zip(histogram.buckets, histogram.counts):
                cumulative += count
                out.append('%s_bucket{route="%s",le="%g"} %d' % (name, route, bound, cumulative))
            out.append('%s_bucket{route="%s",le="+Inf"} %d' % (name, route, histogram.count))
            out.append('%s_sum{route="%s"} %.6f' % (name, route, histogram.total))
            out.append('%s_count{route="%s"} %d' % (name, route, histogram.count))
