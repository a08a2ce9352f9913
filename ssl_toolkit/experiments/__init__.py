"""Experiments on top of the stages: the 2-D toy of the rMCL paper and ``ssl demo``."""
