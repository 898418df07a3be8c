"""JSON decoding with a single failure type.

Strategy: ``json.loads`` reports bad input as ``ValueError``, except nesting deeper than
the interpreter's recursion limit, which raises ``RecursionError``. Every reader of
untrusted JSON (request bodies, provider answers, config and secrets files) goes through
``loads`` so that case is ordinary invalid JSON everywhere, handled where the other
``ValueError``s are.
"""

import json


def loads(text, **options):
    """``json.loads(text, **options)``; raises ``ValueError`` for any invalid input, absurd
    nesting included."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("nested too deeply")
