"""``ssl report``: one comparison table across eval artifacts (Markdown and CSV).

Rows are (artifact, subset) pairs, columns the metrics of the rMCL paper's tables:
method, K, oracle error, EMD, Hungarian error, frame recall, F20, LE_CD. A second
table compares the detection thresholds chosen on validation (fixed 0.5, grid
search, SGL-Thresh) where the eval artifacts hold that comparison.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .artifacts import ArtifactError, read_manifest

__all__ = ["COLUMNS", "collect", "make_report", "print_report"]

#: metrics.json key -> column title, in table order.
COLUMNS = {
    "oracle_deg": "oracle (deg)",
    "emd_deg": "EMD (deg)",
    "hungarian_deg": "Hungarian (deg)",
    "frame_recall": "frame recall",
    "frame_recall_sum": "frame recall (sum)",
    "F20": "F20",
    "LE_CD_deg": "LE_CD (deg)",
    "LR_CD": "LR_CD",
    "nll_vmf": "NLL vMF",
    "nll_voronoi": "NLL Voronoi",
}
SUBSETS = ("D1", "D2", "D3", "overall")


def _load(path: str | os.PathLike) -> tuple[str, dict]:
    man = read_manifest(path, "eval")
    return man.path.name, json.loads(man.file("metrics.json").read_text())


def collect(evals: Sequence[str | os.PathLike]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metric table and the threshold table of several eval artifacts."""
    rows, thr = [], []
    for path in evals:
        name, doc = _load(path)
        for s in SUBSETS:
            if isinstance(doc.get(s), dict):
                vals = {title: doc[s].get(key) for key, title in COLUMNS.items()}
                rows.append(
                    {"eval": name, "method": doc["method"], "K": doc["K"], "subset": s, **vals}
                )
        for how, v in (doc.get("thresholds_val") or {}).items():
            thr.append({"eval": name, "method": doc["method"], "choice": how, **v})
    table = pd.DataFrame(rows).dropna(axis=1, how="all")
    return table, pd.DataFrame(thr)


def make_report(
    evals: Sequence[str | os.PathLike], out: str | os.PathLike, force: bool = False
) -> pd.DataFrame:
    """Write ``report.md`` and ``report.csv`` (and ``thresholds.csv``) into ``out``.

    Raises:
        ArtifactError: when an input is not an eval artifact, or ``out`` already
            holds a report and ``force`` is False.
    """
    if not evals:
        raise ArtifactError("give at least one eval artifact (from `ssl eval` or `ssl baseline`)")
    table, thr = collect(evals)
    out = Path(out)
    if (out / "report.md").exists() and not force:
        raise ArtifactError(f"{out} already holds a report; pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "report.csv", index=False)
    md = ["# Localization results", "", _markdown(table, ".2f"), ""]
    if len(thr):
        thr.to_csv(out / "thresholds.csv", index=False)
        md += [
            "## Detection thresholds (chosen on val, F20 on val)",
            "",
            _markdown(thr, ".3f"),
            "",
        ]
    (out / "report.md").write_text("\n".join(md))
    return table


def _cell(v, fmt: str) -> str:
    if isinstance(v, float):
        return "-" if v != v else format(v, fmt)
    return str(v)


def _markdown(df: pd.DataFrame, fmt: str) -> str:
    """A pipe table (pandas' to_markdown needs the optional tabulate package)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, fmt) for v in row) + " |")
    return "\n".join(lines)


#: Column title -> short title in the terminal table (the files keep the long ones).
_SHORT = {"oracle (deg)": "oracle°", "EMD (deg)": "EMD°", "Hungarian (deg)": "Hung.°",
          "frame recall": "recall", "F20": "F20", "LE_CD (deg)": "LE_CD°"}  # fmt: skip


def print_report(table: pd.DataFrame) -> None:
    """The comparison table on stdout (rich), main columns only."""
    from rich.table import Table

    from .console import out

    t = Table(title="ssl report")
    cols = ["eval", "method", "K", "subset"] + [c for c in _SHORT if c in table.columns]
    for c in cols:
        t.add_column(_SHORT.get(c, c), justify="right" if c in _SHORT or c == "K" else "left")
    for _, r in table.iterrows():
        t.add_row(*[_cell(r[c], ".2f") for c in cols])
    out.print(t)
