"""Full fine-tuning: every weight trains."""

from tunelab.methods.base import Method


class FullFineTuning(Method):
    default_lr = 5e-5
