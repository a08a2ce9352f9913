"""``FeatureSpec``: the typed, frozen description of a features artifact.

Written once by ``ssl prep features`` into the manifest (``extra.feature_params``, the
artifact contract's key and field names), carried by ``model.json`` (runs) and ``io.json``
(exports), and read back by training, eval, baselines, export and predict. Nothing else
looks feature parameters up by string key.

The spec carries the array the audio came from (:class:`ArraySpec`: format, channel order,
capsule positions, acoustic model) and the train split's average level per band
(``levels_db``), so that a model's input is known wherever the model goes: ``ssl eval`` and
``ssl report`` refuse features of another array, ``ssl predict`` states and checks what the
model expects. Both fields are optional: artifacts made before they existed load with
them unknown (None) and :func:`warn_unknown_array` says so once per artifact; the schema is
unchanged (an added optional field: nothing older is refused, nothing needs retraining).
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ..core import readers

#: Feature kinds: ``stft`` (magnitude + phase), ``logmel`` (log-mel + intensity / GCC-PHAT),
#: ``salsa`` (SALSA-Lite: linear-frequency log power + intensity / phase differences).
TYPES = ("stft", "logmel", "salsa")
#: Speed of sound (m/s) of the SALSA-Lite phase-difference normalization.
SPEED_OF_SOUND_M_S = 343.0
#: Array formats: first-order Ambisonics, or the capsule signals of a microphone array.
FORMATS = ("foa", "mic")
#: The FOA channel order and normalization the toolkit renders and reads (as DCASE).
FOA_CHANNELS = ("W", "Y", "Z", "X")
FOA_CONVENTION = "ACN/SN3D"
#: Acoustic models of an array: ``ideal`` FOA encoding (plane-wave gains (1, y, z, x)),
#: ``free-field`` omnidirectional capsules (the toolkit's MIC rendering and steering
#: vectors); ``rigid-sphere`` and ``measured`` are reserved for arrays whose responses are
#: modelled on a baffle or measured.
ACOUSTIC_MODELS = ("ideal", "free-field", "rigid-sphere", "measured")
#: Two capsule positions closer than this (metres) are the same capsule.
POSITION_TOLERANCE_M = 1e-3
#: Bands of :attr:`FeatureSpec.levels_db` (contiguous groups of feature bins).
LEVEL_BANDS = 16


def _cm(metres: float) -> str:
    return f"{metres * 100:.1f}".rstrip("0").rstrip(".") + " cm"


@dataclass(frozen=True)
class ArraySpec:
    """The array the audio comes from: what a model trained on it expects.

    Attributes:
        format: ``foa`` or ``mic``.
        channels: channel names in file order (``W, Y, Z, X`` for FOA; ``m1 .. mM``).
        convention: ``ACN/SN3D`` for FOA; empty for MIC.
        positions_m: capsule positions ``[[x, y, z], ...]`` in metres, DCASE frame (x
            front, y left, z up), array centre at the origin; empty for FOA.
        acoustic_model: one of :data:`ACOUSTIC_MODELS`.
    """

    format: str
    channels: tuple[str, ...]
    convention: str = ""
    positions_m: tuple[tuple[float, float, float], ...] = ()
    acoustic_model: str = "free-field"

    @classmethod
    def foa(cls) -> ArraySpec:
        return cls("foa", FOA_CHANNELS, FOA_CONVENTION, (), "ideal")

    @classmethod
    def mic(cls, positions_m, acoustic_model: str = "free-field") -> ArraySpec:
        pos = tuple(tuple(float(v) for v in p) for p in np.asarray(positions_m, np.float64))
        names = tuple(f"m{i + 1}" for i in range(len(pos)))
        return cls("mic", names, "", pos, acoustic_model)

    def describe(self) -> str:
        """A short name: ``first-order Ambisonics (ACN W,Y,Z,X, SN3D)``, ``4-capsule
        tetrahedral MIC array (r=4.2 cm)``, ``4-capsule planar array (5 cm square)``."""
        if self.format == "foa":
            conv = self.convention.split("/")
            return (f"first-order Ambisonics ({conv[0]} {','.join(self.channels)}, "
                    f"{conv[-1]})")  # fmt: skip
        pos = np.asarray(self.positions_m, np.float64).reshape(-1, 3)
        m = len(pos)
        model = "" if self.acoustic_model == "free-field" else f", {self.acoustic_model}"
        if m < 2:
            return f"{m}-capsule MIC array{model}"
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(m, 1)]
        aperture = float(d.max())
        r = np.linalg.norm(pos - pos.mean(0), axis=1)
        sv = np.linalg.svd(pos - pos.mean(0), compute_uv=False)
        tol = 0.02 * aperture
        if m == 4 and np.ptp(d) < tol and np.ptp(r) < tol:
            return f"4-capsule tetrahedral MIC array (r={_cm(float(r.mean()))}{model})"
        if sv[1] < 0.01 * sv[0]:
            return f"{m}-capsule linear array ({_cm(aperture)} long{model})"
        if sv[-1] < 0.01 * sv[0] or m == 3:
            ds = np.sort(d)
            if m == 4 and np.ptp(ds[:4]) < tol and abs(ds[4:].mean() - ds[0] * 2**0.5) < tol:
                return f"4-capsule planar array ({_cm(float(ds[:4].mean()))} square{model})"
            return f"{m}-capsule planar array (aperture {_cm(aperture)}{model})"
        return f"{m}-capsule MIC array (aperture {_cm(aperture)}{model})"

    def difference(self, other: ArraySpec) -> str | None:
        """Why audio of ``other`` is not audio of this array (None: the same array).

        Format, channel names and order, convention and acoustic model must be equal, and
        capsule positions equal within :data:`POSITION_TOLERANCE_M`.
        """
        if (self.format, self.convention) != (other.format, other.convention):
            return "another format"
        if self.channels != other.channels:
            return "other channels"
        if self.acoustic_model != other.acoustic_model:
            return "another acoustic model"
        a, b = (np.asarray(x.positions_m, np.float64).reshape(-1, 3) for x in (self, other))
        if a.shape != b.shape:
            return "another number of capsules"
        if len(a) == 0:
            return None
        off = float(np.linalg.norm(a - b, axis=1).max())
        if off <= POSITION_TOLERANCE_M:
            return None
        near = np.linalg.norm(a[:, None] - b[None], axis=-1) <= POSITION_TOLERANCE_M
        if near.any(1).all() and near.any(0).all():
            return "the same capsules in another channel order"
        return f"capsule positions up to {_cm(off)} apart"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["positions_m"] = [list(p) for p in self.positions_m]
        d["description"] = self.describe()  # for readers; ignored when loading
        return d

    @classmethod
    def from_dict(cls, d: Any, path, rebuild: str | None, where: str) -> ArraySpec:
        """The array stored at ``path`` (field ``where``), checked.

        Raises:
            ArtifactError: a field missing or mistyped, naming the file and the field.
        """
        if not isinstance(d, dict):
            raise readers.damaged(path, f"field '{where.rstrip('.')}' must be an object",
                                  rebuild)  # fmt: skip
        checks = {
            "format": readers.text(FORMATS),
            "channels": readers.sequence(readers.text()),
            "convention": readers.text(),
            "positions_m": readers.sequence(readers.sequence(readers.number(), 3)),
            "acoustic_model": readers.text(ACOUSTIC_MODELS),
        }
        readers.check_fields(d, checks, path, rebuild, ("format", "channels"), where)
        return cls(
            d["format"],
            tuple(d["channels"]),
            d.get("convention", ""),
            tuple(tuple(float(v) for v in p) for p in d.get("positions_m", [])),
            d.get("acoustic_model", "free-field"),
        )


@dataclass(frozen=True)
class FeatureSpec:
    """How features were computed from audio, and what one chunk of them looks like.

    Attributes:
        type: one of :data:`TYPES` (``stft``, ``logmel``, ``salsa``).
        fs: sample rate the audio is resampled to (Hz).
        n_fft: FFT size (samples).
        win_length: Hann window length (samples), at most ``n_fft``.
        hop_length: hop between frames (samples); frame t is centred at ``t * hop_length``.
        n_mels: mel bands of ``logmel`` (also the GCC-PHAT lags kept).
        n_channels: audio channels (4 for FOA and the tetrahedral array).
        format: ``foa`` (ambisonics) or ``mic`` (microphone array).
        chunk_frames: frames per chunk (25 = 0.5 s at a 20 ms hop).
        max_hz: highest frequency of ``salsa`` features (bins ``1 .. max_hz n_fft / fs``, at
            most the Nyquist bin); None for the other types.
        array: the array the audio came from (None: unknown, an artifact made before the
            spec recorded it).
        levels_db: the train split's average level (dB, arbitrary reference) in each of
            :meth:`level_bands`, as the features see it (:func:`levels_db`); None: unknown.
    """

    type: str
    fs: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    n_channels: int
    format: str
    chunk_frames: int
    array: ArraySpec | None = None
    levels_db: tuple[float, ...] | None = None
    max_hz: float | None = None

    @property
    def band_hz(self) -> tuple[float, float]:
        """The frequencies the features cover: from the first bin kept (the DC bin is
        dropped from ``stft`` and ``salsa``; mel bands start at 0 Hz) to the Nyquist
        frequency (``salsa``: its last bin)."""
        if self.type == "salsa":
            return self.fs / self.n_fft, self.bins * self.fs / self.n_fft
        return (self.fs / self.n_fft if self.type == "stft" else 0.0), self.fs / 2

    def describe_input(self) -> str:
        """One line: what audio the features are made of (format, channels, rate, band)."""
        lo, hi = self.band_hz
        what = (self.array.describe() if self.array is not None
                else f"{self.n_channels}-channel {self.format} audio (array unknown)")  # fmt: skip
        if self.array is not None and self.array.format == "mic":
            what += f", channels {','.join(self.array.channels)}"
        return (f"{what} at {self.fs} Hz, {self.type} features of "
                f"{lo / 1000:.2g}-{hi / 1000:.3g} kHz")  # fmt: skip

    @property
    def hop_s(self) -> float:
        """Seconds between consecutive frames."""
        return self.hop_length / self.fs

    @property
    def channels(self) -> int:
        """Feature channels ``C`` of :meth:`extract`'s output."""
        m = self.n_channels
        if self.type == "stft":
            return 2 * m
        return m + (3 if self.format == "foa" else m * (m - 1) // 2)  # logmel, salsa

    @property
    def bins(self) -> int:
        """Feature bins ``F`` (frequency bins, mel bands or GCC-PHAT lags)."""
        if self.type == "salsa":
            top = min(float(self.max_hz or self.fs / 2), self.fs / 2)
            return max(1, int(top * self.n_fft / self.fs + 1e-9))
        return self.n_fft // 2 if self.type == "stft" else self.n_mels

    @property
    def chunk_shape(self) -> tuple[int, int, int]:
        """``(C, T, F)`` of one chunk: the model's input without the batch axis."""
        return self.channels, self.chunk_frames, self.bins

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT of ``n_samples`` (at ``fs``)."""
        return 1 + n_samples // self.hop_length

    def segment_frames(self, segment_s: float) -> int:
        """Frames per scoring segment of ``segment_s`` seconds (at least one)."""
        return max(1, int(round(segment_s / self.hop_s)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under ``feature_params`` in manifests, model.json and io.json
        (unknown optional fields left out; ``band_hz`` added for readers)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["array"] = None if self.array is None else self.array.to_dict()
        d["levels_db"] = None if self.levels_db is None else [round(v, 2) for v in self.levels_db]
        d["band_hz"] = list(self.band_hz)
        return {k: v for k, v in d.items() if v is not None}

    def level_bands(self) -> list[np.ndarray]:
        """The feature bins of each band of :attr:`levels_db`: :data:`LEVEL_BANDS` (at
        most one per bin) contiguous groups of about equal size, low to high."""
        return np.array_split(np.arange(self.bins), min(LEVEL_BANDS, self.bins))

    @classmethod
    def from_dict(
        cls,
        params: Any,
        path: str | os.PathLike,
        rebuild: str | None,
        where: str = "feature_params.",
    ) -> FeatureSpec:
        """The spec stored at ``path``, checked field by field.

        Raises:
            ArtifactError: a field is missing or of the wrong type, naming the file, the
                field and the command that rebuilds it.
        """
        names = tuple(f.name for f in fields(cls) if f.default is MISSING)
        p = readers.check_feature_params(params, path, rebuild, required=names, where=where)
        spec = cls(**{k: p[k] for k in names})
        array = levels = max_hz = None  # unknown in artifacts made before they were recorded
        if p.get("array") is not None:
            array = ArraySpec.from_dict(p["array"], path, rebuild, f"{where}array.")
        if p.get("max_hz") is not None:
            if why := readers.number(1.0)(p["max_hz"]):
                raise readers.damaged(path, f"field '{where}max_hz' {why}", rebuild)
            max_hz = float(p["max_hz"])
        if spec.type == "salsa" and max_hz is None:
            raise readers.damaged(
                path, f"lacks the field '{where}max_hz' (salsa features)", rebuild
            )
        spec = replace(spec, max_hz=max_hz)  # before levels_db: its bands depend on the bins
        if p.get("levels_db") is not None:
            check = readers.sequence(readers.number(), len(spec.level_bands()))
            if why := check(p["levels_db"]):
                raise readers.damaged(path, f"field '{where}levels_db' {why}", rebuild)
            levels = tuple(float(v) for v in p["levels_db"])
        return replace(spec, array=array, levels_db=levels)


def levels_db(spec: FeatureSpec, mean_features: np.ndarray) -> tuple[float, ...]:
    """The average level in each band of :meth:`FeatureSpec.level_bands` of features whose
    mean over frames is ``mean_features [C, F]``: the level (dB) of the mean magnitude
    (``stft``) or the mean log energy in dB (``logmel``, ``salsa``) of each bin, averaged over the
    audio channels' maps and the band's bins. The same statistic of a recording and of the
    training features compare band by band."""
    m = mean_features[: spec.n_channels].astype(np.float64)  # the magnitude / log-power maps
    if spec.type == "stft":
        db = 20 * np.log10(np.maximum(m, 1e-10))
    else:
        db = 10 / math.log(10) * m
    per_bin = db.mean(axis=0)
    return tuple(float(per_bin[b].mean()) for b in spec.level_bands())


def band_edges_hz(spec: FeatureSpec) -> list[tuple[float, float]]:
    """The frequencies ``(low, high)`` of each band of :meth:`FeatureSpec.level_bands`."""
    lo, hi = spec.band_hz
    if spec.type in ("stft", "salsa"):  # bin k (DC dropped) is centred at (k + 1) fs / n_fft
        step = spec.fs / spec.n_fft
        return [((b[0] + 0.5) * step, (b[-1] + 1.5) * step) for b in spec.level_bands()]
    edges = _mel_edges_hz(spec.n_mels, hi)  # mel band i spans edges[i] .. edges[i + 2]
    return [(float(edges[b[0]]), float(edges[b[-1] + 2])) for b in spec.level_bands()]


def _mel_edges_hz(n_mels: int, fmax: float) -> np.ndarray:
    """The ``n_mels + 2`` edge frequencies of a Slaney mel filterbank on [0, fmax] (as
    ``librosa.mel_frequencies``, without importing librosa)."""

    def to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27),
                        lin)  # fmt: skip

    def to_hz(m):
        return np.where(m >= 15, 1000 * np.exp(np.log(6.4) / 27 * (m - 15)), m * 200.0 / 3)

    return to_hz(np.linspace(0, float(to_mel(fmax)), n_mels + 2))


#: Artifacts already warned about (one warning per artifact per process).
_WARNED: set[str] = set()


def warn_unknown_array(spec: FeatureSpec | None, artifact, what: str, warn=None) -> bool:
    """Warn once (per artifact and process) when ``spec`` records no array; True if so.

    Args:
        spec: the spec read from ``artifact``; artifact: its path (named in the line);
        what: how the line calls it (``run``, ``export``, ``features``); warn: ``warn(line)``
            (default: :func:`ssl_toolkit.core.console.warn`).
    """
    if spec is not None and spec.array is not None:
        return False
    key = os.path.abspath(str(artifact))
    if key not in _WARNED:
        _WARNED.add(key)
        if warn is None:
            from ..core.console import warn
        redo = "ssl prep features --force"
        if what != "features":
            redo = f"ssl train --force on features rebuilt by `{redo}`"
        warn(
            f"{what} {artifact} records no array (made before arrays were recorded): the "
            f"array is unknown and not checked; to record it, rerun {redo}"
        )
    return True


def array_mismatch(model: FeatureSpec | None, data: FeatureSpec | None) -> tuple[str, str] | None:
    """``(model's array, data's array)`` descriptions when features ``data`` are not of
    the array ``model`` was trained on (the data's with what differs when both read the
    same); None when they agree or either is unknown."""
    return arrays_differ(*(None if s is None else s.array for s in (model, data)))


def arrays_differ(model: ArraySpec | None, data: ArraySpec | None) -> tuple[str, str] | None:
    """:func:`array_mismatch` of two arrays (None where either is unknown)."""
    if model is None or data is None:
        return None
    why = model.difference(data)
    if why is None:
        return None
    a, b = model.describe(), data.describe()
    return a, (f"{b} ({why})" if a == b else b)
