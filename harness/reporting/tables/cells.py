"""A table's cells and how each output format writes them: styles, numbers, ranking and rendering."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

from harness.core.errors import HarnessError

FORMATS = ("markdown", "latex", "csv")
HUMAN_MARK = "‡"  # after a row label: people answered the attention queries of its runs


# ----------------------------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class Style:
    """How one output format writes symbols, emphasis and plain text."""

    tablefmt: str
    missing: str
    pm: str
    times: str
    diamond: str
    dagger: str
    bold: Callable[[str], str]
    underline: Callable[[str], str]
    escape: Callable[[str], str]


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    HUMAN_MARK: r"$^\ddagger$",
}


def latex_escape(text: str) -> str:
    """Text with LaTeX's special characters escaped."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def markdown_escape(text: str) -> str:
    """Text safe inside a pipe-table cell."""
    return text.replace("|", r"\|")


STYLES = {
    "markdown": Style(
        tablefmt="github",
        missing="–",
        pm=" ± ",
        times="×",
        diamond="◇",
        dagger="†",
        bold=lambda s: f"**{s}**",
        underline=lambda s: f"<u>{s}</u>",
        escape=markdown_escape,
    ),
    "latex": Style(
        tablefmt="latex_raw",
        missing="--",
        pm=r" $\pm$ ",
        times=r"$\times$",
        diamond=r"$\diamond$",
        dagger=r"$^\dagger$",
        bold=lambda s: rf"\textbf{{{s}}}",
        underline=lambda s: rf"\underline{{{s}}}",
        escape=latex_escape,
    ),
    "csv": Style(  # for analysis: no emphasis, numbers unrounded (see render_csv)
        tablefmt="csv",
        missing="",
        pm=" ± ",
        times="×",
        diamond="◇",
        dagger="†",
        bold=lambda s: s,
        underline=lambda s: s,
        escape=lambda s: s,
    ),
}


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def get_style(fmt: str) -> Style:
    if fmt not in STYLES:
        raise HarnessError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    return STYLES[fmt]


# ------------------------------------------------------------------------------------------------ numbers


@dataclass(frozen=True)
class Stat:
    """Mean and population std (ddof=0) of one cell's values over seeds."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Stat | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return Stat(float(arr.mean()), float(arr.std(ddof=0)), len(arr))


def format_number(value: float, kind: str) -> str:
    """A fraction as a percentage with one decimal (kind 'pct') or as an AIoU score '.xx' (kind 'aiou')."""
    if kind == "pct":
        return f"{100 * value:.1f}"
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


def format_stat(stat: Stat, kind: str, style: Style) -> str:
    mean = format_number(stat.mean, kind)
    return mean if stat.n == 1 else f"{mean}{style.pm}{format_number(stat.std, kind)}"


def trim_number(value: float) -> str:
    """At most two decimals, trailing zeros dropped: 0.10 -> '0.1', 2.0 -> '2'."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def format_range(values: Iterable[float], fmt: Callable[[float], str]) -> str:
    """'a' when every value formats alike, else 'min-max'."""
    vals = list(values)
    low, high = fmt(min(vals)), fmt(max(vals))
    return low if low == high else f"{low}-{high}"


@dataclass(frozen=True)
class Num:
    """A numeric table cell; ranked for bold / underline by its mean as displayed."""

    stat: Stat
    kind: str

    def shown_mean(self) -> float:
        return float(format_number(self.stat.mean, self.kind))


def as_num(stat: Stat | None, kind: str) -> Num | None:
    return None if stat is None else Num(stat, kind)




# ----------------------------------------------------------------------------------------------- rendering

Cell = str | Num | None  # None: a missing value


@dataclass
class Table:
    """Headers and text cells are already written in the target format."""

    caption: str
    headers: list[str]
    rows: list[list[Cell]]
    rank_blocks: list[list[int]]  # row indices ranked together in every numeric column
    footer: list[str] = field(default_factory=list)


def rank_marks(table: Table) -> dict[tuple[int, int], str]:
    """(row, col) -> 'best' or 'second' by displayed mean, higher better; ties share a mark."""
    marks: dict[tuple[int, int], str] = {}
    for block in table.rank_blocks:
        for col in range(len(table.headers)):
            shown = {r: cell.shown_mean() for r in block if isinstance(cell := table.rows[r][col], Num)}
            levels = sorted(set(shown.values()), reverse=True)[:2]
            for row, value in shown.items():
                if value in levels:
                    marks[(row, col)] = "best" if value == levels[0] else "second"
    return marks


def render(table: Table, style: Style) -> str:
    if style.tablefmt == "csv":
        return render_csv(table)
    marks = rank_marks(table)

    def text(row: int, col: int, cell: Cell) -> str:
        if cell is None:
            return style.missing
        if isinstance(cell, str):
            return cell
        shown = format_stat(cell.stat, cell.kind, style)
        mark = marks.get((row, col))
        return style.bold(shown) if mark == "best" else style.underline(shown) if mark == "second" else shown

    body = [[text(r, c, cell) for c, cell in enumerate(row)] for r, row in enumerate(table.rows)]
    grid = tabulate(body, headers=table.headers, tablefmt=style.tablefmt, disable_numparse=True)
    if style.tablefmt == "github":
        footer = "".join(f"\n{line}\n" for line in table.footer)
        return f"{table.caption}\n\n{grid}\n{footer}"
    footer = "".join(f"\n\n{{\\footnotesize {line}}}" for line in table.footer)
    return (
        f"% {table.caption}\n\\begin{{table}}[ht]\n\\centering\n\\caption{{{table.caption}}}\n"
        f"{grid}{footer}\n\\end{{table}}\n"
    )


def render_csv(table: Table) -> str:
    """The table's rows as CSV, without caption or footer: a column of numbers becomes three, the mean, the
    std and the number of seeds (accuracies in percent, unrounded); a missing value is empty."""
    numeric = [any(isinstance(row[col], Num) for row in table.rows) for col in range(len(table.headers))]
    headers = [name for col, header in enumerate(table.headers)
               for name in ((header, f"{header} std", f"{header} seeds") if numeric[col] else (header,))]

    def cells(col: int, cell: Cell) -> list[str]:
        if isinstance(cell, Num):
            unit = 100 if cell.kind == "pct" else 1
            return [repr(unit * cell.stat.mean), repr(unit * cell.stat.std), str(cell.stat.n)]
        return [cell or ""] + (["", ""] if numeric[col] else [])

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([value for col, cell in enumerate(row) for value in cells(col, cell)] for row in table.rows)
    return buffer.getvalue()
