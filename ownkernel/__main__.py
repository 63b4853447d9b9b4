"""`python -m ownkernel …` is the `ownkernel` command."""

import sys

from ownkernel.cli import main

if __name__ == "__main__":
    sys.exit(main())
