"""Tuning methods: one module per method, each mapping its options to freezing or to peft."""
