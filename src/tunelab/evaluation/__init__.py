"""Scores, reports and plots."""
