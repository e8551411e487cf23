"""The bench's one table (printed) and its JSON file (bench/results/)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import ROOT


@dataclass
class Row:
    """One measured figure: a rate, its latency, how it compares, what it cost in memory."""

    scenario: str
    case: str
    rate: float | None = None
    unit: str = ""
    p50: float | None = None  # milliseconds
    p99: float | None = None
    ratio: str = ""
    rss_mib: float | None = None  # peak RSS of every authshim process together
    cores: str = ""
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if abs(value) >= 1 or value == 0 else f"{value:.{digits + 2}f}"


COLUMNS = ("scenario", "case", "rate", "p50 ms", "p99 ms", "ratio", "RSS MiB", "cores", "note")


def cells(row: Row) -> tuple[str, ...]:
    rate = f"{_num(row.rate)} {row.unit}" if row.rate is not None else "-"
    return (
        row.scenario, row.case, rate, _num(row.p50, 2), _num(row.p99, 2), row.ratio,
        _num(row.rss_mib, 0), row.cores, row.note,
    )  # fmt: skip


def table(rows: list[Row], *, markdown: bool = False) -> str:
    """The rows as an aligned text table, or as a Markdown table."""
    lines = [COLUMNS, *(cells(r) for r in rows)]
    if markdown:
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in lines[1:]]
        return "\n".join(out)
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(t.rstrip() for t in text)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git": rev,
    }


def save(path: Path, meta: dict[str, Any], rows: list[Row]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    return path
