"""Sweeps: one job per cell of a parameter grid and per replicate, summarized per cell."""
