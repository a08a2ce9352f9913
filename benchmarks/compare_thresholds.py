"""Detection thresholds of trained runs: fixed 0.5, grid search and SGL-Thresh, re-learned.

For each run, predicts the val and test splits of a features artifact, chooses the three
thresholds on val and prints each one's DCASE F20 on val and on test (the official metric,
1 s segments). This is how the SGL figures of the recipes' results were measured.

Usage::

    .venv/bin/python benchmarks/compare_thresholds.py WORKDIR rmcl5 pit amcl ...

where ``WORKDIR`` is a recipe's work directory (``features/`` and ``runs/NAME`` inside).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    from ssl_toolkit.analysis import metrics, thresholds
    from ssl_toolkit.analysis.frames import predict_split
    from ssl_toolkit.features.store import open_features
    from ssl_toolkit.models.localize import load_localizer

    root = Path(sys.argv[1])
    fs = open_features(root / "features")
    seg_frames = fs.spec.segment_frames(1.0)
    for run in sys.argv[2:]:
        loc = load_localizer(root / "runs" / run)
        fr = {s: predict_split(loc, fs, fs.rows(s), 64) for s in ("val", "test")}
        seg = {s: metrics.segment_ids(f.clip_id, f.frame, seg_frames) for s, f in fr.items()}
        v, t = fr["val"], fr["test"]
        res = thresholds.compare_thresholds(v.conf, v.hyps, v.targets, v.active, seg["val"])
        cells = []
        for name, r in res.items():
            detected = t.conf >= r["threshold"]
            f_test = metrics.dcase_seld(t.hyps, detected, t.targets, t.active, seg["test"])["F20"]
            cells.append(f"{name} t={r['threshold']:.3f} val F20 {r['F20']:.3f} test {f_test:.3f}")
        print(f"{run}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
