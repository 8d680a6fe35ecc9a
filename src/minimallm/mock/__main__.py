"""``python -m minimallm.mock``: see ``minimallm.mock.cli``."""

import sys

from minimallm.mock.cli import main

if __name__ == "__main__":
    sys.exit(main())
