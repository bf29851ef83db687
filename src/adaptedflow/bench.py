"""``python -m adaptedflow.bench``: a command alias for `adaptedflow.book.bench`.

The benchmark harness lives in the book layer; the library never imports this module.
"""

from .book.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
