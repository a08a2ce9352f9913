"""``ssl report``: one comparison table across eval artifacts (Markdown and CSV).

Rows are (artifact, subset) pairs, columns the metrics of the rMCL paper's tables:
method, K, oracle error, EMD, Hungarian error, frame recall, F20, LE_CD, and the
class-aware DCASE metrics (``*_cls``) as columns only when some eval has them (a class-aware
localizer scored on features with classes); every row keeps the class-agnostic ones, so
all rows stay comparable. A second table compares the detection thresholds chosen on
validation (fixed 0.5, grid search, SGL-Thresh) where the eval artifacts hold that comparison.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..analysis.metrics import TITLES, titles
from ..core.artifacts import ArtifactError, Manifest, build_artifact, read_manifest
from ..core.errors import UserError

__all__ = ["COLUMNS", "aggregate_seeds", "collect", "make_report", "print_report", "unique_labels"]

#: metrics.json key -> column title (analysis.metrics.TITLES), in table order; a column no
#: eval has (all empty) is dropped.
COLUMNS = titles(
    ("oracle_deg", "chance_oracle_deg", "emd_deg", "hungarian_deg", "frame_recall",
     "frame_recall_sum", "F20",
     "LE_CD_deg", "LR_CD", "nll_vmf", "nll_voronoi", "ece", "emd_deg_calibrated",
     "F20_cls", "LE_CD_deg_cls", "LR_CD_cls", "ER20_cls", "SELD_cls")
)  # fmt: skip
SCORE_SUBSETS = ("D1", "D2", "D3", "overall")


@dataclass
class _Eval:
    """One eval artifact as the report sees it."""

    path: Path
    doc: dict
    data: str  # features artifact and split it scored
    data_key: tuple[str, str]  # (features fingerprint, split)
    data_path: str = "-"  # the features artifact it scored
    label: str = ""
    group: str = ""  # the same for evals of runs that differ only in their seed
    seed: int | None = None


def _load(path: str | os.PathLike) -> tuple[Manifest, _Eval]:
    man = read_manifest(path, "eval")
    try:
        doc = json.loads(man.file("metrics.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(
            f"{man.path / 'metrics.json'}: unreadable ({e}); rebuild it with `ssl eval --force`"
        ) from e
    if not isinstance(doc, dict) or "method" not in doc or "K" not in doc:
        raise ArtifactError(
            f"{man.path / 'metrics.json'}: not an eval's metrics (no method or K); "
            "rebuild it with `ssl eval --force`"
        )
    feats = [r for r in man.inputs if r.get("kind") == "features"]
    split = str(doc.get("split", man.config.get("split", "?")))
    data = f"{Path(feats[0]['path']).name}:{split}" if feats else "-"
    key = (str(feats[0].get("fingerprint")) if feats else "-", split)
    ev = _Eval(man.path, doc, data, key, str(feats[0]["path"]) if feats else "-")
    ev.group, ev.seed = _seed_group(man, doc, key)
    return man, ev


def _seed_group(man: Manifest, doc: dict, data_key) -> tuple[str, int | None]:
    """What identifies an eval up to the seed of its run: the run's config without the
    seed, the eval's config and the data (or the eval itself when there is no run)."""
    from ..core.artifacts import fingerprint

    runs = [r for r in man.inputs if r.get("kind") == "run"]
    config = None
    if runs:
        try:
            config = read_manifest(runs[0]["path"], "run").config
        except ArtifactError:
            config = None  # the run is gone: no seed to group on
    if not isinstance(config, dict) or "seed" not in config:
        return str(man.path), None
    rest = {k: v for k, v in config.items() if k != "seed"}
    group = fingerprint({"run": rest, "eval": man.config, "data": list(data_key),
                         "label": doc.get("label") or doc["method"]})  # fmt: skip
    return group, int(config["seed"])


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """Each eval's directory name, with parent folders added only where names collide."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    depth = [1] * len(parts)
    while True:
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        dup = {n for n in names if names.count(n) > 1}
        grow = [i for i, n in enumerate(names) if n in dup and depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


def collect(evals: Sequence[_Eval]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metric table and the threshold table of several evals."""
    rows, thr = [], []
    for ev in evals:
        doc = ev.doc
        method = doc.get("label") or doc["method"]
        head = {"eval": ev.label, "method": method, "K": doc["K"], "data": ev.data}
        for s in SCORE_SUBSETS:
            if isinstance(doc.get(s), dict):
                vals = {title: doc[s].get(key) for key, title in COLUMNS.items()}
                rows.append({**head, "subset": s, **vals})
        for how, v in (doc.get("thresholds_val") or {}).items():
            thr.append({"eval": ev.label, "method": method, "choice": how, **v})
    table = pd.DataFrame(rows).dropna(axis=1, how="all")
    return table, pd.DataFrame(thr)


def aggregate_seeds(table: pd.DataFrame, items: Sequence[_Eval]) -> pd.DataFrame | None:
    """Mean ± standard deviation (ddof 1) of each metric over evals of the same method,
    config and data that differ only in the run's seed; None when no such group exists.

    Columns: ``method``, ``K``, ``data``, ``subset``, ``seeds`` (how many), ``evals``
    (their labels), then each metric as ``"mean ± std"`` text (``seeds.csv`` keeps the
    text; the numbers per seed are in ``report.csv``).
    """
    groups: dict[str, list[_Eval]] = {}
    for ev in items:
        if ev.seed is not None:
            groups.setdefault(ev.group, []).append(ev)
    groups = {g: evs for g, evs in groups.items() if len({e.seed for e in evs}) > 1}
    if not groups or table.empty:
        return None
    metrics = [c for c in table.columns if c in COLUMNS.values()]
    rows = []
    for evs in groups.values():
        labels = [e.label for e in evs]
        part = table[table["eval"].isin(labels)]
        for subset, sub in part.groupby("subset", sort=False):
            row = {"method": sub["method"].iloc[0], "K": sub["K"].iloc[0],
                   "data": sub["data"].iloc[0], "subset": subset,
                   "seeds": len({e.seed for e in evs}), "evals": " ".join(labels)}  # fmt: skip
            for c in metrics:
                v = pd.to_numeric(sub[c], errors="coerce").dropna()
                row[c] = f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else "-"
            rows.append(row)
    return pd.DataFrame(rows)


def _input_spec(ref: dict):
    """The :class:`FeatureSpec` an eval's input recorded (a run's ``model.json``, an
    export's ``io.json``, a features manifest), or None when it is gone or was rebuilt
    since (another fingerprint) or records none."""
    from ..features.spec import FeatureSpec

    try:
        m = read_manifest(ref["path"], ref.get("kind"))
        if m.fingerprint != ref.get("fingerprint"):
            return None
        if m.kind == "features":
            params, where = m.extra.get("feature_params"), m.path / "manifest.json"
        elif m.kind == "run":
            from ..models import read_model_meta

            params, where = read_model_meta(m.path).get("feature_params"), m.path / "model.json"
        else:
            from ..models.localize import read_io_json

            params, where = read_io_json(m).get("feature_params"), m.file("io.json")
        return None if params is None else FeatureSpec.from_dict(params, where, None)
    except (ArtifactError, UserError, OSError, KeyError, TypeError):
        return None


def _check_array(man: Manifest, ev: _Eval) -> None:
    """Refuse an eval of a model on features of another array (one made before ``ssl eval``
    refused such pairs): the arrays it recorded (``model_array``, ``data_array``), else
    those its inputs record, where both are known."""
    from ..features.spec import ArraySpec, arrays_differ

    refs = {r.get("kind"): r for r in man.inputs if isinstance(r, dict)}
    model_ref = refs.get("run") or refs.get("export")
    if model_ref is None or "features" not in refs:
        return  # a classical baseline or DCASE result files: no model
    arrays = []
    for key, ref in (("model_array", model_ref), ("data_array", refs["features"])):
        array = None
        if isinstance(man.extra.get(key), dict):
            try:
                array = ArraySpec.from_dict(man.extra[key], man.path / "manifest.json", None,
                                            f"extra.{key}.")  # fmt: skip
            except ArtifactError:
                array = None
        if array is None and (spec := _input_spec(ref)) is not None:
            array = spec.array
        arrays.append(array)
    both = arrays_differ(*arrays)
    if both is not None:
        kind, path = model_ref.get("kind"), model_ref["path"]
        who = f"run {path}" if kind == "run" else f"the model of export {path}"
        raise UserError(
            f"eval {ev.label}: {who} was trained on the {both[0]}, features "
            f"{refs['features']['path']} are of the {both[1]}: its numbers do not apply; "
            f"evaluate on features of the {kind}'s array and report that eval"
        )


def _check_same_data(evals: Sequence[_Eval]) -> None:
    """Refuse evals scored on different features or splits, saying how to make them
    comparable: score each on the features and split most of them used."""
    keys = {ev.data_key for ev in evals}
    if len(keys) > 1:
        seen: dict[tuple[str, str], list[_Eval]] = {}
        for ev in evals:
            seen.setdefault(ev.data_key, []).append(ev)
        which = ", ".join(f"{evs[0].label} ({evs[0].data})" for evs in seen.values())
        ref = max(seen.values(), key=len)[0]
        feats, split = ref.data_path, ref.data_key[1]
        raise ArtifactError(
            f"the evals were scored on different data or splits: {which}; their numbers "
            f"are not comparable. Score them all on one features artifact and split, e.g. "
            f"`ssl eval RUN OUT --data {feats} --split {split}` for a model and "
            f"`ssl baseline SCENES OUT --data {feats} --split {split}` for a classical method "
            "(it localizes the scenes' audio on those features' frames), or pass "
            "--allow-mixed to tabulate them anyway"
        )


def make_report(
    evals: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    force: bool = False,
    allow_mixed: bool = False,
) -> pd.DataFrame:
    """Write the report artifact ``out``: ``report.md``, ``report.csv`` (and
    ``thresholds.csv``), with a manifest naming the evals it tabulates.

    Rows are labelled by each eval's directory name (parents added where two names
    collide); the ``data`` column names the features artifact and split scored.

    Raises:
        ArtifactError: when an input is not an eval artifact (or its metrics are
            damaged), the evals scored different data and ``allow_mixed`` is False, or
            ``out`` holds something else and ``force`` is False.
    """
    if not evals:
        raise ArtifactError("give at least one eval artifact (from `ssl eval` or `ssl baseline`)")
    loaded = [_load(p) for p in evals]
    mans, items = [m for m, _ in loaded], [e for _, e in loaded]
    for ev, label in zip(items, unique_labels([e.path for e in items]), strict=True):
        ev.label = label
    for man, ev in loaded:
        _check_array(man, ev)
    if not allow_mixed:
        _check_same_data(items)
    table, thr = collect(items)
    seeds = aggregate_seeds(table, items)
    cfg = {"evals": [e.label for e in items], "allow_mixed": allow_mixed}
    with build_artifact(out, "report", cfg, mans, force=force) as b:
        if b.reused:
            return table
        table.to_csv(b.dir / "report.csv", index=False)
        md = ["# Localization results", "", _markdown(table, ".2f"), ""]
        if len(thr):
            thr.to_csv(b.dir / "thresholds.csv", index=False)
            md += ["## Detection thresholds (chosen on val, F20 on val)", "",
                   _markdown(thr, ".3f"), ""]  # fmt: skip
        if seeds is not None:
            seeds.to_csv(b.dir / "seeds.csv", index=False)
            md += ["## Mean ± standard deviation over seeds", "", _markdown(seeds, ".2f"), ""]
        md += [_SOURCES, ""]
        (b.dir / "report.md").write_text("\n".join(md), encoding="utf-8")
        b.extra.update({"evals": len(items), "rows": len(table)})
    return table


#: Where each number's definition comes from (printed under every report).
_SOURCES = (
    "Definitions: oracle error, EMD and frame recall as in Letzelter et al., NeurIPS 2023 "
    "(rMCL) and its code, with great-circle distances; chance oracle: the expected oracle "
    "error of K directions drawn uniformly on the sphere (exact: 180 * C(2K, K) / 4^K "
    "degrees; 90 for K = 1, 44.3 for K = 5), the level a method's oracle error must beat; "
    "Hungarian error: optimal one-to-one "
    "matching of detected sources per frame; F20, LE_CD, LR_CD (and ER20, SELD in "
    "metrics.json) exactly as the DCASE 2023 SELD baseline's SELDMetrics (1 s segments, "
    "macro average, 20 degrees); NLLs: vMF mixture and Voronoi densities of the hypotheses; "
    "ECE: expected calibration error of the confidences as predictors of the winning "
    "hypotheses (10 bins), and the EMD after a temperature fitted on val. "
    "Columns marked class-aware: the same DCASE metrics where a detection matches only "
    "references of its own class, macro-averaged over the dataset's classes (SELDMetrics, "
    "average='macro'); only for localizers with classes scored on data with classes. "
    "A dash: not defined for the method (ECE and the EMD after a temperature: no "
    "confidence scores, e.g. WTA, a classical baseline, DCASE result files; NLLs: no vMF "
    "concentration fitted on val; frame recall: the source count was given, not "
    "estimated). rmcl*: rMCL with drawn "
    "negatives."
)


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
_SHORT = {
    TITLES[k].long: TITLES[k].short
    for k in ("oracle_deg", "chance_oracle_deg", "emd_deg", "hungarian_deg", "frame_recall",
              "F20", "LE_CD_deg", "F20_cls", "LE_CD_deg_cls")
}  # fmt: skip


def print_report(table: pd.DataFrame, out_dir: str | None = None) -> None:
    """The comparison table on stdout (rich), main columns only; split over several tables
    (each led by the eval and subset) rather than cut when the terminal is narrow."""
    from ..core.console import print_table

    cols = ["eval", "subset", "method", "K", "data"] + [c for c in _SHORT if c in table.columns]
    rows = [[_cell(r[c], ".2f") for c in cols] for _, r in table.iterrows()]
    full = f"{out_dir}/report.md" if out_dir else "report.md"
    print_table("ssl report", [_SHORT.get(c, c) for c in cols], rows, keys=2,
                right=[*_SHORT.values(), "K"], full=full)  # fmt: skip
