"""``python -m minimallm``: the ``minimallm`` command (see :mod:`minimallm.cli`)."""

import sys

from minimallm.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
