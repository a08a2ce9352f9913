"""PNG plots of localizations: tracks over time and equirectangular sky maps.

One visual encoding everywhere (``ssl eval --plots`` and ``ssl predict --plot``):
hypotheses are dots coloured by confidence (viridis, colour bar 0..1), detected ones are
ringed in red, reference sources are black crosses; time is in seconds. Sky maps put
azimuth increasing to the left (as seen from the array, like a sky map; labelled on the
axis) with room beyond ±180° so targets at the seam are not clipped. Legends sit outside
the data. Matplotlib is imported inside the functions (Agg backend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.geometry import unit_to_sph

__all__ = ["plot_clip_tracks", "plot_frame_map", "plot_eval", "plot_reliability", "plot_tracks"]

CMAP = "viridis"
DETECTED = {"facecolors": "none", "edgecolors": "red", "linewidths": 0.7}
TARGET = {"marker": "x", "c": "black", "linewidths": 0.9}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _deg(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    az, el = unit_to_sph(np.asarray(u, np.float64))
    return np.rad2deg(az), np.rad2deg(el)


def plot_tracks(path, t_s, hyps, conf, detected, title: str, targets=None, active=None) -> Path:
    """Azimuth and elevation of every hypothesis over time (and of the targets, if given).

    Args:
        path: the PNG to write; t_s: ``[n]`` seconds; hyps: ``[n, K, 3]`` (NaN rows: not
            drawn); conf: ``[n, K]``; detected: ``[n, K]`` bool; title: the figure title;
        targets: ``[n, S, 3]`` and active ``[n, S]`` (optional).
    """
    plt = _plt()
    t_s = np.asarray(t_s, np.float64)
    h_az, h_el = _deg(hyps)  # (n, K)
    k = h_az.shape[1]
    tt, c, det = np.repeat(t_s, k), np.asarray(conf, float).ravel(), np.asarray(detected).ravel()
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True)
    for ax, h, lim, name in ((axes[0], h_az, 180, "azimuth (deg)"),
                             (axes[1], h_el, 90, "elevation (deg)")):  # fmt: skip
        sc = ax.scatter(tt, h.ravel(), c=c, s=6, cmap=CMAP, vmin=0, vmax=1, label="hypothesis")
        ax.scatter(tt[det], h.ravel()[det], s=22, label="detected", **DETECTED)
        if targets is not None:
            g = _deg(targets)[0 if lim == 180 else 1]
            act = np.asarray(active, bool)
            tg = np.broadcast_to(t_s[:, None], act.shape)[act]
            ax.scatter(tg, g[act], s=10, label="reference", **TARGET)
        ax.set_ylim(-lim - 8, lim + 8)  # sources at +-180 / +-90 stay visible
        ax.set_yticks(np.linspace(-lim, lim, 5))
        ax.set_ylabel(name)
        ax.grid(alpha=0.25)
    axes[1].set_xlabel("time (s)")
    axes[0].legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.99, ha="right", fontsize=10)
    fig.colorbar(sc, ax=axes, label="confidence", fraction=0.03, pad=0.01)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_clip_tracks(path, frame, hyps, conf, targets, active, hop_s: float, title: str,
                     detected=None) -> Path:  # fmt: skip
    """:func:`plot_tracks` of one clip's frames (frame indices times ``hop_s`` seconds)."""
    det = np.zeros(np.shape(conf), bool) if detected is None else detected
    t_s = np.asarray(frame) * hop_s
    return plot_tracks(path, t_s, hyps, conf, det, title, targets, active)


def plot_frame_map(path, hyps, conf, targets, active, title: str, detected=None) -> Path:
    """Equirectangular sky map of one frame: hypotheses (colour = confidence), targets."""
    plt = _plt()
    h_az, h_el = _deg(hyps)  # (K,)
    g_az, g_el = _deg(targets)  # (S,)
    c = np.asarray(conf, float)
    det = np.zeros(c.shape, bool) if detected is None else np.asarray(detected, bool)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sc = ax.scatter(h_az, h_el, c=c, s=25 + 100 * c, cmap=CMAP, vmin=0, vmax=1,
                    label="hypothesis (size, colour: confidence)")  # fmt: skip
    ax.scatter(h_az[det], h_el[det], s=60 + 100 * c[det], label="detected", **DETECTED)
    act = np.asarray(active, bool)
    ax.scatter(g_az[act], g_el[act], s=90, label="reference", **TARGET)
    ax.set_xlim(190, -190)  # azimuth grows to the left, as on a sky map; seam not clipped
    ax.set_ylim(-95, 95)
    ax.set_xticks(np.arange(180, -181, -45))
    ax.set_yticks(np.arange(-90, 91, 30))
    ax.set_xlabel("azimuth (deg, counter-clockwise from the front: left is positive)")
    ax.set_ylabel("elevation (deg)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncol=3, fontsize=8, frameon=False)
    fig.colorbar(sc, ax=ax, label="confidence", fraction=0.04, pad=0.01)
    fig.suptitle(title, x=0.99, ha="right", fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_eval(directory, fr, hop_s: float, threshold: float, max_clips: int = 4,
              frames_per_clip: int = 2, merge_deg: float = 0.0) -> list[Path]:  # fmt: skip
    """Plots of the first clips of an evaluation into ``directory/plots``.

    Invalid slots (no estimate) are not drawn; detected hypotheses (valid, confidence >=
    ``threshold``) are ringed. With ``merge_deg`` the hypotheses drawn are the merged ones
    the detection sees (:func:`~ssl_toolkit.models.localize.merge_nearby`).

    Args:
        fr: :class:`ssl_toolkit.evaluation.evaluate.Frames`; hop_s: seconds per frame.
    """
    from ..models.localize import detect, merge_nearby

    h, c, v = merge_nearby(fr.hyps, fr.conf, fr.valid, merge_deg)
    hyps = np.where(v[..., None], h, np.nan)  # NaN: matplotlib skips the point
    det = detect(c, v, threshold)
    if merge_deg:
        threshold_note = f"threshold {threshold:.2f}, merged within {merge_deg:g} deg"
    else:
        threshold_note = f"threshold {threshold:.2f}"
    out = Path(directory) / "plots"
    out.mkdir(exist_ok=True)
    written = []
    for clip in list(dict.fromkeys(fr.clip_id.tolist()))[:max_clips]:
        m = np.flatnonzero(fr.clip_id == clip)
        m = m[np.argsort(fr.frame[m], kind="stable")]
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in clip)
        written.append(plot_clip_tracks(
            out / f"{safe}_tracks.png", fr.frame[m], hyps[m], c[m], fr.targets[m],
            fr.active[m], hop_s, f"{clip}: {threshold_note}", det[m],
        ))  # fmt: skip
        busy = m[np.argsort(-fr.active[m].sum(1), kind="stable")[:frames_per_clip]]
        for i in busy:
            written.append(plot_frame_map(
                out / f"{safe}_frame{fr.frame[i]}.png", hyps[i], c[i], fr.targets[i],
                fr.active[i], f"{clip}, t = {fr.frame[i] * hop_s:.2f} s", det[i],
            ))  # fmt: skip
    return written


def plot_reliability(path, fr, temperature: float | None, title: str) -> Path:
    """Reliability diagram: share of winning hypotheses against confidence, per bin.

    Drawn for the raw confidences and, when a temperature was fitted on val, for the
    tempered ones; the diagonal is perfect calibration, bar heights below it mean
    over-confidence. Bin counts are in the lower panel.
    """
    from . import calibration

    plt = _plt()
    win = calibration.winner_labels(fr.hyps, fr.targets, fr.active, fr.valid)
    curves = [("raw", fr.conf)]
    if temperature is not None:
        curves.append(
            (f"T = {temperature:.2f}", calibration.apply_temperature(fr.conf, temperature))
        )
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect")
    for name, conf in curves:
        r = calibration.reliability(conf, win, fr.valid)
        mid = 0.5 * (r["edges"][1:] + r["edges"][:-1])
        ax.plot(r["confidence"], r["frequency"], marker="o", label=f"{name}: ECE {r['ece']:.3f}")
        axn.bar(mid, r["count"], width=0.09, alpha=0.5, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of winning hypotheses")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    axn.set_xlabel("confidence")
    axn.set_ylabel("hypotheses")
    axn.set_yscale("log")
    fig.suptitle(f"{title}: calibration on the scored split", fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
