"""Training through transformers.Trainer: arguments, callbacks, resume."""
