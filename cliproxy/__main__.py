"""Entry point for ``python3 -m cliproxy``. The zipapp has its own (build_zipapp.MAIN),
with the same version check."""

import sys

# Checked before anything else is imported, in syntax old interpreters can parse.
if sys.version_info < (3, 8):
    sys.stderr.write("cliproxy needs Python 3.8 or newer; this is Python %d.%d\n" % tuple(sys.version_info[:2]))
    sys.exit(1)

if sys.argv[1:] == ["--version"]:  # answered without importing the command line module
    from cliproxy import __version__

    sys.stdout.write("cliproxy %s\n" % __version__)
    sys.exit(0)

from cliproxy.cli import main  # noqa: E402  (after the version check, on purpose)

if __name__ == "__main__":
    sys.exit(main())
