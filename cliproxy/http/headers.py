"""Header fields as an ordered list of (lowercase name, value) pairs.

Strategy: names are lowercased once, when parsed or added, so every lookup is a plain
string comparison (RFC 9110 §5.1: field names are case-insensitive). Values are ``str``
decoded as latin-1, which round-trips any byte the parser accepted. Repeated fields keep
their order. Names are written lowercase on the wire; every HTTP/1.1 peer must accept that.

The pairs live in one list, ``_items``. Hot paths of this package (the server framing a
response, ``strip_hop_by_hop``) read that list directly and build new ``Headers`` with
``__new__``: on a proxied request each method call saved is a measurable share of its cost.
"""

# RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones proxies traditionally drop.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)

# The standard methods (RFC 9110 §9, RFC 5789): each a token, so the parser and the writer
# accept them with a set lookup instead of the token regex.
COMMON_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")
)


class Headers:
    """An ordered multi-map of header fields. Lookup names must be lowercase."""

    __slots__ = ("_items",)

    def __init__(self, items=()):
        self._items = [(name.lower(), value) for name, value in items]

    @classmethod
    def from_lowered(cls, items):
        """Wrap a list of pairs whose names are already lowercase (no copy, no check)."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def get(self, name, default=None):
        """The first value of ``name``, or ``default``."""
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name):
        """Every value of ``name``, in order."""
        return [value for key, value in self._items if key == name]

    def get_list(self, name):
        """Every comma-separated element of every ``name`` field, stripped, lowercase."""
        out = []
        for key, value in self._items:
            if key == name:
                out.extend(part.strip().lower() for part in value.split(",") if part.strip())
        return out

    def __contains__(self, name):
        for key, _ in self._items:
            if key == name:
                return True
        return False

    def add(self, name, value):
        self._items.append((name.lower(), value))

    def set(self, name, value):
        """Replace every ``name`` field by one with ``value`` (at the end)."""
        name = name.lower()
        items = self._items
        for key, _ in items:
            if key == name:
                items = self._items = [item for item in items if item[0] != name]
                break
        items.append((name, value))

    def remove(self, *names):
        """Drop every field whose name is among ``names`` (lowercase)."""
        self._items = [item for item in self._items if item[0] not in names]

    def without(self, names):
        """A copy without the fields in the set ``names`` (lowercase)."""
        copy = Headers.__new__(Headers)  # ``from_lowered``, inline
        copy._items = [item for item in self._items if item[0] not in names]
        return copy

    def copy(self):
        return Headers.from_lowered(list(self._items))

    def items(self):
        return list(self._items)

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __eq__(self, other):
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self):
        return "Headers(%r)" % (self._items,)

    def encode(self):
        """The fields as ``name: value\\r\\n`` lines (latin-1), without the final blank line."""
        return "".join("%s: %s\r\n" % item for item in self._items).encode("latin-1")


def strip_hop_by_hop(headers, dropped=HOP_BY_HOP):
    """A copy of ``headers`` without hop-by-hop fields, including those named in
    ``Connection`` (RFC 9110 §7.6.1), in one pass. ``dropped`` is the fixed set of names to
    drop: ``HOP_BY_HOP``, or a caller's precomputed superset of it."""
    items = headers._items
    for name, _ in items:  # a plain loop: ``Connection`` is rare in a response
        if name == "connection":
            named = headers.get_list("connection")
            if not dropped.issuperset(named):
                dropped = dropped.union(named)
            break
    stripped = Headers.__new__(Headers)  # ``headers.without(dropped)``, inline
    stripped._items = [item for item in items if item[0] not in dropped]
    return stripped
