"""`python -m pytest_cnnbudget summary|plot TARGET`; see `cli.py`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
