"""Personal data: found with presidio (offline recognisers only) and replaced by numbered
placeholders before texts are trained on, logged or stored."""
