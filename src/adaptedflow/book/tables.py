"""Tables for the book's pages: rows of numbers shown as HTML tables that wrap.

A chapter builds its rows and calls `table(rows, columns)`; the result displays as an
HTML table in the book (cells wrap, so nothing is clipped at any width) and as aligned
plain text in a terminal or papermill's log.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass


def _cell(value, fmt: str | None) -> str:
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return "–"                     # a missing number, whatever the column's format
    if fmt is not None and value is not None and not isinstance(value, str):
        return format(value, fmt)
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Table:
    """A table of formatted cells: `columns` (header strings) and `cells` (rows of strings)."""

    columns: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    caption: str | None = None

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.cells)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (f'<div class="af-table-wrap"><table class="af-table">{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")

    def __str__(self) -> str:
        rows = [self.columns, *self.cells]
        widths = [max(len(r[j]) for r in rows) for j in range(len(self.columns))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(([self.caption] if self.caption else []) + lines)

    __repr__ = __str__


def table(rows: Sequence[Sequence], columns: Sequence[str], *, formats: Sequence[str | None] | None = None,
          caption: str | None = None) -> Table:
    """A `Table` of `rows` under `columns`.

    Args:
        rows: one sequence of values per row, as many values as `columns`.
        columns: the header of each column (plain text; units in brackets).
        formats: a format spec per column (e.g. ``".2e"``, ``"d"``, None for the default:
            floats with 3 significant digits, anything else as `str`). NaN is shown as "–"
            (a missing number) in every column.
        caption: one line shown above the table.

    Raises:
        ValueError: a row whose length differs from `columns`, or `formats` of another length.
    """
    columns = tuple(str(c) for c in columns)
    formats = tuple(formats) if formats is not None else (None,) * len(columns)
    if len(formats) != len(columns):
        raise ValueError(f"`formats` has {len(formats)} entries for {len(columns)} columns.")
    cells = []
    for i, row in enumerate(rows):
        row = tuple(row)
        if len(row) != len(columns):
            raise ValueError(f"row {i} has {len(row)} values for {len(columns)} columns {columns}.")
        cells.append(tuple(_cell(v, f) for v, f in zip(row, formats, strict=True)))
    return Table(columns, tuple(cells), caption)
