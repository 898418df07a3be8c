"""Request targets: the path a route is chosen on, and the forms a proxy must refuse.

Strategy: pure functions over the raw target string (never percent-decoded for routing).
``split_target`` turns any accepted request-target form into (path, query); ``check_path``
refuses what a path-prefix router cannot judge safely, because an upstream may resolve it
to another route than the one classified here (SPEC §3.1):

- a ``.`` or ``..`` segment, raw or percent-encoded (``%2e``, any case): ``/auth/../api/x``
  is classified as a browser page but names ``/api/x`` upstream;
- an encoded ``/`` or ``\\`` (``%2f``, ``%5c``) or a raw ``\\``: a segment that some servers
  split in two after routing.
"""

from cliproxy.errors import BadRequest

_SCHEMES = ("http://", "https://")


def split_target(target):
    """(path, query) of a request target, both raw. The absolute form
    (``http://host/path?q``, RFC 9112 §3.2.2) gives its path (``/`` when empty): the
    authority in it never selects anything. The asterisk form and anything else that is
    not origin-form is returned as its own path (no route will match it)."""
    if not target.startswith("/") and target[:8].lower().startswith(_SCHEMES):
        rest = target.split("://", 1)[1]
        cut = min(_find(rest, "/"), _find(rest, "?"))
        target = rest[cut:]
        if not target.startswith("/"):
            target = "/" + target
    path, _, query = target.partition("?")
    return path, query


def _find(text, char):
    index = text.find(char)
    return len(text) if index < 0 else index


def may_need_check(path):
    """A cheap screen: False means ``check_path`` would accept ``path``."""
    return "%" in path or "/." in path or "\\" in path


def check_path(path):
    """Raise ``BadRequest`` when ``path`` holds a dot segment (raw or ``%2e``), an encoded
    ``/`` or ``\\``, or a raw ``\\``; return None otherwise."""
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered or "\\" in lowered:
        raise BadRequest("the request path holds an encoded '/' or a '\\'")
    for segment in lowered.split("/"):
        if segment.replace("%2e", ".") in (".", ".."):
            raise BadRequest("the request path holds a '.' or '..' segment")
