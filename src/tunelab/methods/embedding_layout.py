"""File names of a saved sentence-embedding classifier (methods/embedding_classifier.py),
here apart so that an exported model's code reads them without importing torch."""

HEAD, SETTINGS = "classifier.safetensors", "embedding_classifier.json"
