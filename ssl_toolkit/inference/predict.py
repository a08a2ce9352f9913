"""Localize sources in raw multichannel audio files with a trained run or an export.

For each audio file the features the model was trained on are computed with
``data_prep.features.extract``, block by block (bounded memory for any file
length), the model runs on chunks of ``chunk_frames`` frames as in training, and
two CSV files are written, one row per (model) frame and direction, angles in degrees
(the toolkit's own format):

- ``<stem>_hypotheses.csv``: ``frame, time_s, hypothesis, azimuth_deg, elevation_deg,
  confidence, detected`` for all K hypotheses of every frame;
- ``<stem>.csv``: ``frame, time_s, azimuth_deg, elevation_deg, confidence`` for the
  detected sources only (confidence >= the threshold learned at evaluation or given).

With ``dcase=True`` a third one, ``dcase/<stem>.csv``, holds the detected sources as a
DCASE result file (100 ms label frames, ``frame,class,source,azimuth,elevation``, no header;
decimated as :mod:`ssl_toolkit.analysis.dcase_csv` states, streamed block by block): the
``dcase/`` folder is what ``ssl eval --dcase-csv`` and the DCASE evaluation scripts take.

Streaming: a block of L frames needs the audio of those frames plus half an FFT
window of context on each side (frames are centred at ``t * hop``), so the
features of consecutive blocks concatenate to exactly the whole-file features.
A file at another sample rate is resampled block by block with
``scipy.signal.resample_poly`` (with the filter's support as context, so the
result equals resampling the whole file); a file with another channel count is refused.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..core.artifacts import ArtifactError
from ..core.cpu import tick
from ..core.errors import DataError, UserError
from ..core.geometry import unit_to_sph
from ..features.spec import TYPES, FeatureSpec
from ..models.localize import Localization, ModelLocalizer, load_localizer

HYP_COLUMNS = (
    "frame",
    "time_s",
    "hypothesis",
    "azimuth_deg",
    "elevation_deg",
    "confidence",
    "detected",
)
SRC_COLUMNS = ("frame", "time_s", "azimuth_deg", "elevation_deg", "confidence")


# --------------------------------------------------------------------------- audio


class AudioReader:
    """Random access to an audio file at the model's sample rate, ``[M, n]`` float32.

    Resampling (when the file's rate differs) is done per request with
    ``resample_poly`` over the requested span plus the filter's support, aligned
    on the polyphase grid, so any span equals the same span of the whole file resampled.
    """

    def __init__(self, path: str | os.PathLike, fs: int, n_channels: int | None):
        import soundfile as sf

        self.path = Path(path)
        try:
            self._f = sf.SoundFile(str(self.path))
        except (RuntimeError, sf.LibsndfileError) as e:
            why = " ".join(str(e).split())
            raise DataError(f"{self.path}: cannot read audio ({why})") from e
        if n_channels is not None and self._f.channels != n_channels:
            self._f.close()
            raise DataError(
                f"{self.path} has {self._f.channels} channels, the model expects "
                f"{n_channels}; give a recording of the array the model was trained for"
            )
        if self._f.frames <= 0:
            self._f.close()
            raise DataError(f"{self.path} holds no samples (an empty recording)")
        self.fs_in = self._f.samplerate
        self.fs = int(fs)
        ratio = Fraction(self.fs, self.fs_in)
        self.up, self.down = ratio.numerator, ratio.denominator
        # resample_poly's default filter has half-length 10 * max(up, down) at the up rate
        self.margin = 0 if ratio == 1 else math.ceil(10 * max(self.up, self.down) / self.up) + 1
        self.n = math.ceil(self._f.frames * self.up / self.down)

    def _read_in(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` at the file's rate, refusing NaN or infinite ones."""
        self._f.seek(start)
        x = self._f.read(stop - start, dtype="float32", always_2d=True).T  # (M, n)
        if not np.isfinite(x).all():
            t = (start + int(np.flatnonzero(~np.isfinite(x).all(0))[0])) / self.fs_in
            raise DataError(f"{self.path} holds NaN or infinite samples (first at {t:.3f} s)")
        return x

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` at the model rate ``[M, stop - start]``, clipped."""
        start, stop = max(0, start), min(self.n, stop)
        if self.up == self.down == 1:
            return self._read_in(start, stop)
        from scipy.signal import resample_poly

        a = max(0, (start * self.down // self.up - self.margin) // self.down * self.down)
        b = min(self._f.frames, -(-stop * self.down // self.up) + self.margin)
        y = resample_poly(self._read_in(a, b), self.up, self.down, axis=1)
        off = a * self.up // self.down
        return y[:, start - off : stop - off].astype(np.float32)

    def close(self) -> None:
        self._f.close()


# --------------------------------------------------------------------------- features


def _context_samples(spec: FeatureSpec) -> int:
    """Samples of context a block needs on each side: half a window, rounded up to hops."""
    hop = spec.hop_length
    half = max(spec.n_fft, spec.win_length) // 2
    return -(-half // hop) * hop + hop


def stream_features(
    reader: AudioReader,
    spec: FeatureSpec,
    block_frames: int,
    extract: Callable[[np.ndarray, int, FeatureSpec], np.ndarray] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Features of a whole file, block by block.

    Args:
        reader: the audio (``read(start, stop)`` and ``n`` at the model rate ``reader.fs``).
        spec: the features' specification (hop, window, FFT size, ...).
        block_frames: frames per block (memory is O(block_frames)).
        extract: ``extract(audio [M, n], fs, spec) -> [C, T, F]``; default
            :func:`ssl_toolkit.features.extract.extract`.

    Yields:
        ``(first_frame, feats [C, L, F])``; concatenated along T they equal
        ``extract`` of the whole file.
    """
    if extract is None:
        from ..features.extract import extract
    hop = spec.hop_length
    ctx = _context_samples(spec)
    t0 = 0
    while True:
        start = max(0, t0 * hop - ctx)
        stop = min(reader.n, (t0 + block_frames) * hop + ctx)
        feats = extract(reader.read(start, stop), reader.fs, spec)  # (C, T_local, F)
        off = t0 - start // hop
        take = feats[:, off : off + block_frames]
        if take.shape[1] == 0:
            return
        yield t0, take
        t0 += take.shape[1]
        if stop >= reader.n and off + block_frames >= feats.shape[1]:
            return


def run_chunks(localizer: ModelLocalizer, feats: np.ndarray, chunk: int) -> Localization:
    """Localize ``feats [C, L, F]`` cut into chunks of ``chunk`` frames (a batch).

    Returns:
        The localization of the ``L`` frames.
    """
    c, length, f = feats.shape
    n_full = length // chunk
    parts = []
    if n_full:
        x = feats[:, : n_full * chunk].reshape(c, n_full, chunk, f).transpose(1, 0, 2, 3)
        parts.append(localizer.localize(x))  # (B, C, chunk, F) -> B * chunk frames
    if length % chunk:
        parts.append(localizer.localize(feats[None, :, n_full * chunk :]))
    return Localization.concat(parts, localizer.K)


# --------------------------------------------------------------------------- outputs


def _rows(t0: int, hop_s: float, loc: Localization, threshold: float):
    """CSV rows of a block: all valid hypotheses, and the detected ones."""
    length, k = loc.conf.shape
    az, el = unit_to_sph(loc.hyps)  # (L, K) each
    az_deg, el_deg = np.degrees(az.astype(np.float64)), np.degrees(el.astype(np.float64))
    frame = np.repeat(np.arange(t0, t0 + length), k)
    det = loc.detected(threshold).ravel()
    keep = loc.valid.ravel()
    cols = [
        frame,
        np.round(frame * hop_s, 6),
        np.tile(np.arange(k), length),
        np.round(az_deg.ravel(), 3),
        np.round(el_deg.ravel(), 3),
        np.round(loc.conf.ravel().astype(np.float64), 5),
        det.astype(int),
    ]
    hyp_rows = list(zip(*(c[keep].tolist() for c in cols), strict=True))
    src_rows = [(r[0], r[1], r[3], r[4], r[5]) for r in hyp_rows if r[6]]
    return hyp_rows, src_rows


def predict_file(
    predictor: ModelLocalizer,
    audio: str | os.PathLike,
    out_dir: Path,
    threshold: float | None = None,
    block_seconds: float = 10.0,
    plot: bool = False,
    dcase: bool = False,
) -> Path:
    """Localize the sources of one audio file; returns the detected-sources CSV.

    The CSVs are written to temporary names and renamed once complete; with ``dcase`` the
    DCASE result file goes to ``out_dir / "dcase" / "<stem>.csv"`` (the folder must exist).
    """
    spec = _spec(predictor)
    thr = predictor.threshold if threshold is None else float(threshold)
    block = _block_frames(spec, block_seconds)
    reader = AudioReader(audio, spec.fs, spec.n_channels)
    stem = Path(audio).stem
    hyp_path, src_path = out_dir / f"{stem}_hypotheses.csv", out_dir / f"{stem}.csv"
    dcase_path = out_dir / "dcase" / f"{stem}.csv"
    tmp_h, tmp_s, tmp_d = (p.with_name(f".{p.name}.partial") for p in (hyp_path, src_path,
                                                                       dcase_path))  # fmt: skip
    decimator = None
    if dcase:
        from ..analysis.dcase_csv import StreamDecimator

        decimator = StreamDecimator(spec.hop_s)
    try:
        with open(tmp_h, "w", newline="") as fh, open(tmp_s, "w", newline="") as fsrc:
            wh, ws = csv.writer(fh), csv.writer(fsrc)
            wh.writerow(HYP_COLUMNS)
            ws.writerow(SRC_COLUMNS)
            for t0, feats in stream_features(reader, spec, block):
                tick()  # threads follow the machine's load
                loc = run_chunks(predictor, feats, spec.chunk_frames)
                hyp_rows, src_rows = _rows(t0, spec.hop_s, loc, thr)
                wh.writerows(hyp_rows)
                ws.writerows(src_rows)
                if decimator is not None:
                    frames = np.arange(t0, t0 + len(loc.conf))
                    # a class-aware localizer's classes (None: class 0)
                    decimator.add(frames, loc.hyps, loc.detected(thr), loc.classes)
        if decimator is not None:
            from ..core.labels import write_metadata

            write_metadata(tmp_d, decimator.table())
        os.replace(tmp_h, hyp_path)
        os.replace(tmp_s, src_path)
        if decimator is not None:
            os.replace(tmp_d, dcase_path)
    finally:
        reader.close()
        for p in (tmp_h, tmp_s, tmp_d):
            p.unlink(missing_ok=True)
    if plot:
        plot_predictions(hyp_path, out_dir / f"{stem}.png", thr)
    return src_path


def plot_predictions(hyp_csv: Path, png: Path, threshold: float) -> Path:
    """Hypotheses over time from ``<stem>_hypotheses.csv``, in the eval plots' encoding."""
    import pandas as pd

    from ..analysis.plots import plot_tracks
    from ..core.geometry import sph_to_unit

    df = pd.read_csv(hyp_csv)
    u = sph_to_unit(np.deg2rad(df.azimuth_deg.to_numpy()), np.deg2rad(df.elevation_deg.to_numpy()))
    name = hyp_csv.stem.removesuffix("_hypotheses")
    return plot_tracks(png, df.time_s.to_numpy(), u[:, None], df.confidence.to_numpy()[:, None],
                       df.detected.to_numpy()[:, None] == 1,
                       f"{name}: threshold {threshold:.2f}")  # fmt: skip


def _check_block_memory(predictor: ModelLocalizer, n_samples: int, block_seconds: float) -> None:
    """Refuse a ``--block-seconds`` whose block of chunks (one batch) would not fit in memory."""
    from ..core.memory import check_batch

    spec = _spec(predictor)
    if spec.type not in TYPES:  # features this toolkit does not make: extract refuses them
        return
    frames = min(_block_frames(spec, block_seconds), spec.n_frames(n_samples))
    chunk = spec.chunk_frames
    check_batch(-(-frames // chunk), spec.chunk_shape, predictor.K, "--block-seconds")


def _block_frames(spec: FeatureSpec, block_seconds: float) -> int:
    """Frames per block of about ``block_seconds``: a whole number of chunks, at least one."""
    chunk = spec.chunk_frames
    return max(chunk, round(block_seconds / spec.hop_s) // chunk * chunk)


def _spec(predictor: ModelLocalizer) -> FeatureSpec:
    """The predictor's feature specification (a run that does not record one is refused)."""
    if predictor.spec is None:
        raise ArtifactError(f"{predictor.source}: its model.json has no feature_params")
    return predictor.spec


def _start_of_run(predictor: ModelLocalizer, spec: FeatureSpec, audio_files) -> int:
    """Check every file's header (channel count: refused) before anything is written;
    returns the longest file's length in samples at the model rate."""
    longest = 0
    for a in audio_files:
        r = AudioReader(a, spec.fs, spec.n_channels)
        longest = max(longest, r.n)
        r.close()
    return longest


def _announce(predictor: ModelLocalizer, spec: FeatureSpec, audio_files) -> None:
    """State the model's expected input in one line and what each file's audio says
    against it (:mod:`~ssl_toolkit.inference.input_checks`: one line per finding, warnings
    as ``warning:``), all on stderr; printed once every file was read (a file that fails
    leaves its error as the only line)."""
    from rich.markup import escape

    from ..core.console import err, warn
    from ..features.spec import warn_unknown_array
    from .input_checks import banner, check_audio

    lines: list[tuple[str, str]] = []  # (kind, line)
    for a in audio_files:
        r = AudioReader(a, spec.fs, spec.n_channels)
        try:
            check_audio(r, spec, lambda ln: lines.append(("warn", ln)),
                        lambda ln: lines.append(("note", f"note: {ln}")))  # fmt: skip
        finally:
            r.close()
    err.print(escape(banner(spec, predictor.source)), highlight=False, soft_wrap=True)
    warn_unknown_array(spec, predictor.source, "run" if predictor.backend == "torch" else "export")
    for kind, line in lines:
        if kind == "warn":
            warn(line)
        else:
            err.print(escape(line), highlight=False, soft_wrap=True)


def predict_files(
    export_or_run: str | os.PathLike,
    audio_files,
    out_dir: str | os.PathLike,
    threshold: float | None = None,
    plot: bool = False,
    block_seconds: float = 10.0,
    force: bool = False,
    backend: str = "auto",
    dcase: bool = False,
) -> list[Path]:
    """Localize the sources of each audio file with a run or an export.

    Args:
        export_or_run: a ``run`` or ``export`` artifact directory.
        audio_files: multichannel audio files (any format soundfile reads).
        out_dir: where the CSVs (and plots) go.
        threshold: detection threshold; default the model's (learned at evaluation).
        plot: also write ``<stem>.png``.
        block_seconds: audio processed per block (bounds memory).
        force: overwrite existing CSVs.
        backend: see :func:`ssl_toolkit.models.localize.load_localizer`.
        dcase: also write ``out_dir/dcase/<stem>.csv``, the DCASE result file of each file.

    Returns:
        The detected-sources CSV of each file, then (``dcase``) the DCASE result file of
        each file.

    Raises:
        UserError / DataError: missing files, existing outputs without ``force``,
            unreadable audio or a channel count the model does not take.
    """
    from ..core.console import track

    audio_files = [Path(a) for a in audio_files]
    if not audio_files:
        raise UserError("give at least one audio file")
    if not (block_seconds > 0 and math.isfinite(block_seconds)):
        raise UserError(f"--block-seconds must be a finite number > 0, got {block_seconds}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:  # NaN fails too
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    for a in audio_files:
        if not a.is_file():
            raise DataError(f"audio file {a} does not exist")
    stems = [a.stem for a in audio_files]
    if len(set(stems)) != len(stems):
        raise UserError("two audio files share a name stem; their CSVs would collide")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file, not a directory")
    if not force:
        names = [f"{s}.csv" for s in stems] + [f"dcase/{s}.csv" for s in stems if dcase]
        taken = [out / n for n in names if (out / n).exists()]
        if taken:
            raise UserError(f"{taken[0]} exists; pass --force to overwrite")
    predictor = load_localizer(export_or_run, backend)
    spec = _spec(predictor)
    if dcase:
        from ..analysis.dcase_csv import check_hop

        check_hop(spec.hop_s)
    longest = _start_of_run(predictor, spec, audio_files)
    _check_block_memory(predictor, longest, block_seconds)
    _announce(predictor, spec, audio_files)
    created = not out.exists()
    dcase_dir = out / "dcase"
    dcase_created = dcase and not dcase_dir.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        if dcase:
            dcase_dir.mkdir(exist_ok=True)
        written = [
            predict_file(predictor, a, out, threshold, block_seconds, plot, dcase)
            for a in track(audio_files, "localizing")
        ]
        return written + [dcase_dir / f"{s}.csv" for s in stems if dcase]
    except OSError as e:
        raise UserError(f"cannot write {e.filename or out}: {e.strerror or e}") from e
    finally:
        if dcase_created and dcase_dir.is_dir() and not any(dcase_dir.iterdir()):
            dcase_dir.rmdir()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed first run leaves no empty output folder
