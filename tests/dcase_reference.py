"""Loop-by-loop transcription of the official DCASE 2023 SELD metrics, for the tests.

Source: the DCASE 2023 task 3 baseline (github.com/sharathadavanne/seld-dcase2023):
``SELDMetrics.update_seld_scores`` / ``compute_seld_scores`` and
``least_distance_between_gt_pred`` of ``SELD_evaluation_metrics.py``, and
``FeatureClass.segment_labels`` of ``cls_feature_class.py``. Rewritten here with the
same data structures (per block ``{class: [[frame indices], [per-frame lists of
[track, x, y, z]]]}``) and the same control flow, so that ``metrics.dcase_seld`` can
be checked against it; it is deliberately slow and literal. The one knob,
``norm_eps``, is the ``1e-10`` the official Cartesian distance adds inside its
normalization (``None``: no normalization, the distance of ``dcase_seld``).

Frame-wise input of one clip (the output format of the baseline's
``load_output_format_file``): ``{frame: [[class, track, x, y, z], ...]}``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

eps = np.finfo(np.float64).eps


def segment_labels(frame_dict: dict, max_frames: int, frames_per_block: int) -> dict:
    """Blocks of ``frames_per_block`` frames: ``{block: {class: [[keys, values]]}}``."""
    nb_blocks = int(np.ceil(max_frames / float(frames_per_block)))
    output_dict = {x: {} for x in range(nb_blocks)}
    for frame_cnt in range(0, max_frames, frames_per_block):
        block_cnt = frame_cnt // frames_per_block
        loc_dict = {}  # [class][frame in block] = list of [track, x, y, z]
        for audio_frame in range(frame_cnt, frame_cnt + frames_per_block):
            if audio_frame not in frame_dict:
                continue
            for value in frame_dict[audio_frame]:
                if value[0] not in loc_dict:
                    loc_dict[value[0]] = {}
                block_frame = audio_frame - frame_cnt
                if block_frame not in loc_dict[value[0]]:
                    loc_dict[value[0]][block_frame] = []
                loc_dict[value[0]][block_frame].append(value[1:])
        for class_cnt in loc_dict:
            if class_cnt not in output_dict[block_cnt]:
                output_dict[block_cnt][class_cnt] = []
            keys = [k for k in loc_dict[class_cnt]]
            values = [loc_dict[class_cnt][k] for k in loc_dict[class_cnt]]
            output_dict[block_cnt][class_cnt].append([keys, values])
    return output_dict


def distance_between_cartesian_coordinates(x1, y1, z1, x2, y2, z2, norm_eps=1e-10):
    """Angle in degrees; the official normalizes by ``sqrt(|v|^2 + 1e-10)``."""
    if norm_eps is not None:
        n1 = np.sqrt(x1**2 + y1**2 + z1**2 + norm_eps)
        n2 = np.sqrt(x2**2 + y2**2 + z2**2 + norm_eps)
        x1, y1, z1, x2, y2, z2 = x1 / n1, y1 / n1, z1 / n1, x2 / n2, y2 / n2, z2 / n2
    dist = x1 * x2 + y1 * y2 + z1 * z2
    dist = np.clip(dist, -1, 1)
    return np.arccos(dist) * 180 / np.pi


def least_distance_between_gt_pred(gt_list, pred_list, norm_eps=1e-10):
    """Hungarian matching of one frame's references (rows) and predictions (columns)."""
    gt_len, pred_len = gt_list.shape[0], pred_list.shape[0]
    ind_pairs = np.array([[x, y] for y in range(pred_len) for x in range(gt_len)])
    cost_mat = np.zeros((gt_len, pred_len))
    if gt_len and pred_len:
        g, p = gt_list[ind_pairs[:, 0]], pred_list[ind_pairs[:, 1]]
        cost_mat[ind_pairs[:, 0], ind_pairs[:, 1]] = distance_between_cartesian_coordinates(
            g[:, 0], g[:, 1], g[:, 2], p[:, 0], p[:, 1], p[:, 2], norm_eps
        )
    row_ind, col_ind = linear_sum_assignment(cost_mat)
    return cost_mat[row_ind, col_ind], row_ind, col_ind


class SELDMetrics:
    """The official accumulator: feed blocks of each clip, then ``compute_seld_scores``."""

    def __init__(self, doa_threshold=20, nb_classes=1, average="macro", norm_eps=1e-10):
        self._nb_classes = nb_classes
        self._TP = np.zeros(nb_classes)
        self._FP = np.zeros(nb_classes)
        self._FP_spatial = np.zeros(nb_classes)
        self._FN = np.zeros(nb_classes)
        self._Nref = np.zeros(nb_classes)
        self._spatial_T = doa_threshold
        self._S = 0
        self._D = 0
        self._I = 0
        self._total_DE = np.zeros(nb_classes)
        self._DE_TP = np.zeros(nb_classes)
        self._DE_FP = np.zeros(nb_classes)
        self._DE_FN = np.zeros(nb_classes)
        self._average = average
        self._norm_eps = norm_eps

    @staticmethod
    def early_stopping_metric(_er, _f, _le, _lr):
        return np.mean([_er, 1 - _f, _le / 180, 1 - _lr], 0)

    def compute_seld_scores(self):
        ER = (self._S + self._D + self._I) / (self._Nref.sum() + eps)
        if self._average == "micro":
            F = self._TP.sum() / (
                eps
                + self._TP.sum()
                + self._FP_spatial.sum()
                + 0.5 * (self._FP.sum() + self._FN.sum())
            )
            LE = self._total_DE.sum() / float(self._DE_TP.sum() + eps) if self._DE_TP.sum() else 180
            LR = self._DE_TP.sum() / (eps + self._DE_TP.sum() + self._DE_FN.sum())
            SELD_scr = self.early_stopping_metric(ER, F, LE, LR)
        elif self._average == "macro":
            F = self._TP / (eps + self._TP + self._FP_spatial + 0.5 * (self._FP + self._FN))
            LE = self._total_DE / (self._DE_TP + eps)
            LE[self._DE_TP == 0] = 180.0
            LR = self._DE_TP / (eps + self._DE_TP + self._DE_FN)
            SELD_scr = self.early_stopping_metric(np.repeat(ER, self._nb_classes), F, LE, LR)
            F, LE, LR, SELD_scr = F.mean(), LE.mean(), LR.mean(), SELD_scr.mean()
        return ER, F, LE, LR, SELD_scr

    def update_seld_scores(self, pred, gt):
        for block_cnt in range(len(gt.keys())):
            loc_FN, loc_FP = 0, 0
            for class_cnt in range(self._nb_classes):
                nb_gt_doas = (
                    max([len(val) for val in gt[block_cnt][class_cnt][0][1]])
                    if class_cnt in gt[block_cnt]
                    else None
                )
                nb_pred_doas = (
                    max([len(val) for val in pred[block_cnt][class_cnt][0][1]])
                    if class_cnt in pred[block_cnt]
                    else None
                )
                if nb_gt_doas is not None:
                    self._Nref[class_cnt] += nb_gt_doas
                if class_cnt in gt[block_cnt] and class_cnt in pred[block_cnt]:
                    matched_track_dist = {}
                    matched_track_cnt = {}
                    gt_ind_list = gt[block_cnt][class_cnt][0][0]
                    pred_ind_list = pred[block_cnt][class_cnt][0][0]
                    for gt_ind, gt_val in enumerate(gt_ind_list):
                        if gt_val in pred_ind_list:
                            gt_arr = np.array(gt[block_cnt][class_cnt][0][1][gt_ind])
                            gt_ids = np.arange(len(gt_arr[:, -1]))  # position in the list
                            gt_doas = gt_arr[:, 1:]
                            pred_ind = pred_ind_list.index(gt_val)
                            pred_arr = np.array(pred[block_cnt][class_cnt][0][1][pred_ind])
                            pred_doas = pred_arr[:, 1:]
                            dist_list, row_inds, _ = least_distance_between_gt_pred(
                                gt_doas, pred_doas, self._norm_eps
                            )
                            for dist_cnt, dist_val in enumerate(dist_list):
                                matched_gt_track = gt_ids[row_inds[dist_cnt]]
                                if matched_gt_track not in matched_track_dist:
                                    matched_track_dist[matched_gt_track] = []
                                    matched_track_cnt[matched_gt_track] = []
                                matched_track_dist[matched_gt_track].append(dist_val)
                                matched_track_cnt[matched_gt_track].append(pred_ind)
                    if len(matched_track_dist) == 0:
                        # no frame holds both: the official counts nb_pred_doas (sic) as FN
                        loc_FN += nb_pred_doas
                        self._FN[class_cnt] += nb_pred_doas
                        self._DE_FN[class_cnt] += nb_pred_doas
                    else:
                        for track_id in matched_track_dist:
                            total_spatial_dist = sum(matched_track_dist[track_id])
                            total_framewise_matching_doa = len(matched_track_cnt[track_id])
                            avg_spatial_dist = total_spatial_dist / total_framewise_matching_doa
                            self._total_DE[class_cnt] += avg_spatial_dist
                            self._DE_TP[class_cnt] += 1
                            if avg_spatial_dist <= self._spatial_T:
                                self._TP[class_cnt] += 1
                            else:
                                loc_FP += 1
                                self._FP_spatial[class_cnt] += 1
                        if nb_pred_doas > nb_gt_doas:
                            loc_FP += nb_pred_doas - nb_gt_doas
                            self._FP[class_cnt] += nb_pred_doas - nb_gt_doas
                            self._DE_FP[class_cnt] += nb_pred_doas - nb_gt_doas
                        elif nb_pred_doas < nb_gt_doas:
                            loc_FN += nb_gt_doas - nb_pred_doas
                            self._FN[class_cnt] += nb_gt_doas - nb_pred_doas
                            self._DE_FN[class_cnt] += nb_gt_doas - nb_pred_doas
                elif class_cnt in gt[block_cnt] and class_cnt not in pred[block_cnt]:
                    loc_FN += nb_gt_doas
                    self._FN[class_cnt] += nb_gt_doas
                    self._DE_FN[class_cnt] += nb_gt_doas
                elif class_cnt not in gt[block_cnt] and class_cnt in pred[block_cnt]:
                    loc_FP += nb_pred_doas
                    self._FP[class_cnt] += nb_pred_doas
                    self._DE_FP[class_cnt] += nb_pred_doas
            self._S += np.minimum(loc_FP, loc_FN)
            self._D += np.maximum(0, loc_FN - loc_FP)
            self._I += np.maximum(0, loc_FP - loc_FN)


# --- glue for the tests: arrays -> the official frame-wise format ----------------------


def frame_dict(dirs, mask, classes) -> dict:
    """``{frame: [[class, slot, x, y, z], ...]}`` of one clip, slots in slot order.

    Args:
        dirs: ``[F, M, 3]``; mask: ``[F, M]`` bool; classes: ``[F, M]`` int.
    """
    out = {}
    for f in range(len(mask)):
        for m in range(mask.shape[1]):
            if mask[f, m]:
                x, y, z = (float(v) for v in dirs[f, m])
                out.setdefault(f, []).append([int(classes[f, m]), m, x, y, z])
    return out


def one_class(clips):
    """The same clips with every class set to 0 (class-agnostic scoring)."""
    return [
        tuple({f: [[0, *v[1:]] for v in vs] for f, vs in d.items()} for d in (gt, pred)) + (n,)
        for gt, pred, n in clips
    ]


def official_metrics(
    clips,
    frames_per_block: int,
    nb_classes: int,
    threshold_deg: float = 20.0,
    average: str = "macro",
    norm_eps=None,
) -> SELDMetrics:
    """The official accumulator after every clip (its counters: ``ev._TP`` etc.).

    Args:
        clips: ``(gt_dict, pred_dict, n_frames)`` per clip, dicts as :func:`frame_dict`.
        norm_eps: ``1e-10`` for the official distance, ``None`` for ``dcase_seld``'s.
    """
    ev = SELDMetrics(threshold_deg, nb_classes, average, norm_eps)
    for gt, pred, n_frames in clips:
        ev.update_seld_scores(
            segment_labels(pred, n_frames, frames_per_block),
            segment_labels(gt, n_frames, frames_per_block),
        )
    return ev


def scores(ev: SELDMetrics) -> dict[str, float]:
    """``compute_seld_scores`` keyed like ``metrics.dcase_seld``."""
    er, f, le, lr, seld = ev.compute_seld_scores()
    return {"ER20": er, "F20": f, "LE_CD_deg": le, "LR_CD": lr, "SELD": seld}
