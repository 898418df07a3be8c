"""A bounded memo for pure functions on the request path.

Strategy: routes, decisions, URLs and parsed targets are pure functions of a few values
that repeat on every request. ``Memo`` is a ``dict`` whose ``__missing__`` computes and
stores the value, so a hit is a plain subscript (no Python-level call at all) and only a
miss runs Python code. The keys come from a small set in practice (Amp uses a few dozen
paths and models), but clients choose them, so the memo holds at most ``size`` entries:
when full it is emptied and refills with what is in use, which keeps memory bounded
without the bookkeeping of an LRU on every hit.
"""

__all__ = ["Memo"]


class Memo(dict):
    """``memo[key]`` is ``compute(key)``, computed on the first lookup and remembered.

    At most ``size`` keys are kept (all are dropped when a new one would exceed it). An
    exception from ``compute`` propagates and nothing is stored. ``compute`` must be pure:
    a value is never recomputed while its key stays.
    """

    __slots__ = ("_compute", "_size")

    def __init__(self, compute, size):
        super().__init__()
        if size < 1:
            raise ValueError("a memo holds at least one entry")
        self._compute = compute
        self._size = size

    def __missing__(self, key):
        value = self._compute(key)
        if len(self) >= self._size:
            self.clear()
        self[key] = value
        return value
