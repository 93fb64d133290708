"""Exporters: turn a trained run into a deployable model plus a report that proves it
still agrees with the PyTorch model. One module per format, one line in the registry."""
