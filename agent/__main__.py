"""``python -m agent [--name N] [--group G ...] [--cores C]``."""

import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
