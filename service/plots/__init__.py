"""Plots of jobs, sweeps and models as PNG images."""
