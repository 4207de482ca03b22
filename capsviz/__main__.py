"""Command line: `python -m capsviz train|evaluate|predict ...` (see --help of each)."""

from capsviz.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
