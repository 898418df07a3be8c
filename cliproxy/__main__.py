"""Entry point for ``python3 -m cliproxy`` and for the zipapp."""

import sys

from cliproxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
