"""Drift monitoring: the served prediction distribution against the run's held-out one."""
