"""Measuring and showing localization quality: metrics, detection thresholds, calibration,
mixture densities and plots; shared by training (validation), evaluation and prediction."""
