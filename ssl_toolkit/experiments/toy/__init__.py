"""The toy experiment of the rMCL paper (Letzelter et al. 2023, after Rupprecht et al. 2017).

Input ``t ~ U[0, 1]``. Given t, there are 2 targets with probability ``|1 - 2t|``, else 1;
each target, independently, is uniform in one quadrant of ``[-1, 1]^2``: the (-,-) and (+,+)
quadrants with probability ``(1 - t) / 2`` each, the (+,-) and (-,+) quadrants with ``t / 2``.

Four predictors with K = 20 hypotheses on an MLP (``t`` -> ReLU hidden layers -> K linear
position heads and K confidence logits) are compared, each trained with Adam on fresh batches:

- ``smcl``: WTA (Rupprecht's MCL) on the Euclidean distance; its hypotheses weigh 1/K each;
- ``rmcl``: WTA + BCE on K confidences (target 1 for hypotheses that win a target, 0 for all
  the others);
- ``rmcl*``: as rmcl, but the BCE's negatives are ``negatives`` non-winners drawn uniformly;
- ``ie``: 20 independent single-hypothesis MLPs of the same architecture (their own
  initializations and their own data), equal weights. As in the authors' code, a member is
  updated towards the closest of the active targets (``ie_target = "closest"``);
  ``"all"`` averages over the targets instead, and every member then collapses onto the
  geometric median, the origin (EMD about 0.76).

Each predictor is scored by the earth mover's distance (POT ``ot.emd2``, Euclidean ground cost)
between its hypotheses weighted by normalized confidences and ``n_gt_samples`` samples of the
target law at each of ``n_eval_t`` evenly spaced values of t. The paper reports mean EMDs of
about 0.17 (rMCL), 0.19 (sMCL) and 0.62 (IE). For reference, 20 geometric-median
(k-medians) centres, the optimum of the WTA loss, score 0.162 with their cell masses as
weights and 0.175 with weights 1/20.
"""
