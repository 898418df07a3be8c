#!/usr/bin/env python3
"""Build dist/cliproxy.pyz: the whole package in one compressed, reproducible zipapp.

Reproducible means two builds of the same tree are byte-identical: entries are sorted,
every timestamp is fixed, permissions are normalised, and only source files go in (no
bytecode, which would embed interpreter-specific data).
"""

import argparse
import io
import os
import stat
import sys
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "cliproxy"
SHEBANG = b"#!/usr/bin/env python3\n"
# 1980-01-01, the earliest time a zip entry can carry: fixed so builds do not depend on
# the checkout's mtimes.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
# The version check comes first, in syntax Python 2.7 and 3.6 can parse, so an old
# interpreter (RHEL 8's python3 is 3.6) gets one line instead of a traceback.
# ``--version`` is answered before the command line module is even imported: a
# monitoring probe or a packaging script asks it often, and wants it at once. Then the
# package's modules load through ``cliproxy.bytecache``: compiled once, not every start.
MAIN = b"""import sys
if sys.version_info < (3, 8):
    sys.stderr.write("cliproxy needs Python 3.8 or newer; this is Python %d.%d\\n" % tuple(sys.version_info[:2]))
    sys.exit(1)
if sys.argv[1:] == ["--version"]:
    from cliproxy import __version__
    sys.stdout.write("cliproxy %s\\n" % __version__)
    sys.exit(0)
from cliproxy import bytecache
bytecache.install(sys.path[0], bytecache.cache_directory())
from cliproxy.cli import main
sys.exit(main())
"""


def source_files(root):
    """Every .py file of the package, as sorted archive names."""
    names = []
    for directory, dirs, files in os.walk(os.path.join(root, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                names.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(names)


def _entry(name):
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.create_system = 3  # unix, whatever machine builds it
    return info


def build_archive(root=ROOT):
    """The zipapp's bytes (shebang included)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_entry("__main__.py"), MAIN, compresslevel=9)
        for name in source_files(root):
            with open(os.path.join(root, name), "rb") as handle:
                archive.writestr(_entry(name), handle.read(), compresslevel=9)
    return SHEBANG + buffer.getvalue()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join(ROOT, "dist", "cliproxy.pyz"))
    args = parser.parse_args(argv)
    data = build_archive()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    temporary = args.output + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o755)
    os.replace(temporary, args.output)
    print("wrote %s (%d bytes)" % (os.path.relpath(args.output), len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
