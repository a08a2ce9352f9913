"""Detection thresholds of scored evals: SGL against the grid (val) and a fixed 0.5 (test).

Usage::

    .venv/bin/python benchmarks/threshold_table.py exp/ansyn/evals/*

The val F20 of fixed 0.5 / grid / SGL and SGL's threshold come from each eval's
``metrics.json`` (``thresholds_val``, fitted on val by the code that ran the eval, which
may be newer than the run's stored threshold); the test F20 at 0.5 and at SGL's threshold
are recomputed from its ``predictions.npz`` (official DCASE F20, 1 s segments of 50
frames). Prints a
Markdown table and how many runs meet SGL's targets (val >= grid - 0.005, test >= 0.5's).
Unscored evals (no confidences) are skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ssl_toolkit.analysis.metrics import dcase_seld, segment_ids
from ssl_toolkit.models.localize import detect

COLUMNS = (
    "eval",
    "SGL threshold",
    "val F20 fixed 0.5",
    "val F20 grid",
    "val F20 SGL",
    "SGL - grid (val)",
    "test F20 fixed 0.5",
    "test F20 SGL",
    "SGL - fixed (test)",
)


def row(ev: Path) -> tuple | None:
    d = json.loads((ev / "metrics.json").read_text())
    if not d.get("scored") or "thresholds_val" not in d:
        return None
    p = np.load(ev / "predictions.npz", allow_pickle=False)
    seg = segment_ids(p["clip_id"], p["frame"], 50)

    def f20(thr: float) -> float:
        det = detect(p["conf"], p["valid"], thr)
        return dcase_seld(p["hyps"], det, p["targets"], p["active"], seg)["F20"]

    v = {k: d["thresholds_val"][k]["F20"] for k in ("fixed", "grid", "sgl")}
    t_sgl = d["thresholds_val"]["sgl"]["threshold"]
    fixed, sgl = f20(0.5), f20(t_sgl)
    return (ev.name, t_sgl, v["fixed"], v["grid"], v["sgl"], v["sgl"] - v["grid"],
            fixed, sgl, sgl - fixed)  # fmt: skip


def main() -> None:
    rows = [r for r in (row(Path(a)) for a in sys.argv[1:]) if r is not None]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        cells = [f"{x:+.3f}" if i in (5, 8) else f"{x:.3f}" for i, x in enumerate(r) if i]
        print(f"| {r[0]} | " + " | ".join(cells) + " |")
    ok_val = sum(r[5] >= -0.005 for r in rows)
    ok_test = sum(r[8] >= 0 for r in rows)
    print(f"\nSGL val F20 >= grid - 0.005 in {ok_val}/{len(rows)} runs; "
          f"test F20 >= fixed 0.5 in {ok_test}/{len(rows)} runs")  # fmt: skip


if __name__ == "__main__":
    main()
