"""`python -m scripts.benchmarks [flags]` from the repository's root (what `scripts/bench` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
