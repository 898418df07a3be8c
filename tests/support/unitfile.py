"""Reading the shipped systemd unit, and running its command outside systemd.

``read_unit`` parses ``contrib/cliproxy.service`` the way systemd reads the settings the
tests look at: sections, ``Key=value`` lines (a key may repeat; an empty value resets
the list), ``#``/``;`` comments. ``exec_start`` is the unit's command with its
interpreter replaced and its absolute paths moved under a test root, so a test runs
exactly what systemd would start.
"""

import os
import sys
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "contrib", "cliproxy.service")


def read_unit(path: str = UNIT) -> Dict[str, Dict[str, List[str]]]:
    """section -> key -> the values in file order (an empty assignment clears them)."""
    sections = {}  # type: Dict[str, Dict[str, List[str]]]
    current = None
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, _, value = line.partition("=")
            values = current.setdefault(key.strip(), [])
            if value.strip():
                values.append(value.strip())
            else:
                values.clear()
    return sections


def service(path: str = UNIT) -> Dict[str, List[str]]:
    return read_unit(path)["Service"]


def rooted(root: str, path: str) -> str:
    """``path`` (absolute, as on the target host) under the directory ``root``."""
    return os.path.join(root, path.lstrip("/"))


def exec_start(root: str, path: str = UNIT) -> List[str]:
    """The unit's ExecStart as an argument list: the interpreter is this test's Python,
    every other absolute path is moved under ``root``."""
    words = service(path)["ExecStart"][-1].split()
    return [sys.executable] + [rooted(root, w) if w.startswith("/") else w for w in words[1:]]
