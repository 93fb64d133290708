"""Compression: pruning and distillation students, int8, and `tunelab compress`."""
