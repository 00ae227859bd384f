"""`python -m clients`: the same as the `provledger` console script."""

from __future__ import annotations

from clients.cli import main

if __name__ == "__main__":
    main()
