"""``python -m adaptedflow.book``: see `adaptedflow.book.pipeline`."""

from .pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
