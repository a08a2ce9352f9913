"""PNG plots of an evaluation: tracks over time and equirectangular maps.

Matplotlib is imported inside the functions (Agg backend), so importing this
module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .geometry import unit_to_sph

__all__ = ["plot_clip_tracks", "plot_frame_map", "plot_eval"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_clip_tracks(path, frame, hyps, conf, targets, active, hop_s: float, title: str) -> Path:
    """Truth vs hypotheses over time for one clip: azimuth and elevation panels.

    Hypotheses are dots whose opacity is their confidence; targets are black.

    Args:
        frame: ``[n]`` frame indices; hyps: ``[n, K, 3]``; conf: ``[n, K]``;
        targets: ``[n, S, 3]``; active: ``[n, S]``; hop_s: seconds per frame.
    """
    plt = _plt()
    t_s = np.asarray(frame) * hop_s
    h_az, h_el = (np.rad2deg(a) for a in unit_to_sph(hyps))  # (n, K)
    g_az, g_el = (np.rad2deg(a) for a in unit_to_sph(targets))  # (n, S)
    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    k = hyps.shape[1]
    colors = np.zeros((len(t_s) * k, 4))
    colors[:, 2] = 0.8
    colors[:, 3] = np.clip(np.asarray(conf).ravel(), 0.02, 1.0)
    tt = np.repeat(t_s, k)
    for ax, h, g, name in (
        (axes[0], h_az, g_az, "azimuth (deg)"),
        (axes[1], h_el, g_el, "elevation (deg)"),
    ):
        ax.scatter(tt, h.ravel(), s=6, c=colors, label="hypotheses (opacity = confidence)")
        act = np.asarray(active, bool)
        ax.scatter(
            np.broadcast_to(t_s[:, None], act.shape)[act], g[act], s=4, c="k", label="targets"
        )
        ax.set_ylabel(name)
    axes[0].set_ylim(-180, 180)
    axes[1].set_ylim(-90, 90)
    axes[1].set_xlabel("time (s)")
    axes[0].legend(loc="upper right", fontsize=7)
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_frame_map(path, hyps, conf, targets, active, title: str) -> Path:
    """Equirectangular map of one frame: hypotheses (size/opacity = confidence), targets."""
    plt = _plt()
    h_az, h_el = (np.rad2deg(a) for a in unit_to_sph(hyps))  # (K,)
    g_az, g_el = (np.rad2deg(a) for a in unit_to_sph(targets))  # (S,)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    c = np.clip(np.asarray(conf, float), 0.02, 1.0)
    rgba = np.zeros((len(c), 4))
    rgba[:, 2], rgba[:, 3] = 0.8, c
    ax.scatter(h_az, h_el, s=20 + 120 * c, c=rgba, label="hypotheses")
    act = np.asarray(active, bool)
    ax.scatter(g_az[act], g_el[act], marker="x", s=80, c="r", label="targets")
    ax.set_xlim(180, -180)  # azimuth grows to the left (counter-clockwise from the front)
    ax.set_ylim(-90, 90)
    ax.set_xlabel("azimuth (deg)")
    ax.set_ylabel("elevation (deg)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_eval(
    directory, fr, seg_frames: int, threshold: float = 0.5, max_clips: int = 4,
    frames_per_clip: int = 2,
):  # fmt: skip
    """Plots of the first clips of an evaluation into ``directory/plots``.

    Invalid slots (no estimate) are not drawn.

    Args:
        fr: :class:`ssl_toolkit.evaluation.Frames`; seg_frames: frames per second
            (the DCASE segment), to label time; threshold: detection threshold (unused
            slots aside, every hypothesis is drawn with its confidence).
    """
    hyps = np.where(fr.valid[..., None], fr.hyps, np.nan)  # NaN: matplotlib skips the point
    fr = type(fr)(**{**vars(fr), "hyps": hyps})
    out = Path(directory) / "plots"
    out.mkdir(exist_ok=True)
    hop_s = 1.0 / max(seg_frames, 1)
    written = []
    for clip in list(dict.fromkeys(fr.clip_id.tolist()))[:max_clips]:
        m = np.flatnonzero(fr.clip_id == clip)
        m = m[np.argsort(fr.frame[m], kind="stable")]
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in clip)
        written.append(
            plot_clip_tracks(
                out / f"{safe}_tracks.png",
                fr.frame[m],
                fr.hyps[m],
                fr.conf[m],
                fr.targets[m],
                fr.active[m],
                hop_s,
                clip,
            )
        )
        busy = m[np.argsort(-fr.active[m].sum(1), kind="stable")[:frames_per_clip]]
        for i in busy:
            written.append(
                plot_frame_map(
                    out / f"{safe}_frame{fr.frame[i]}.png",
                    fr.hyps[i],
                    fr.conf[i],
                    fr.targets[i],
                    fr.active[i],
                    f"{clip} frame {fr.frame[i]}",
                )
            )
    return written
