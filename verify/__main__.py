"""``python -m verify`` / ``torchrun -m verify`` entry point."""

import sys

from verify.cli import main

if __name__ == "__main__":
    sys.exit(main())
