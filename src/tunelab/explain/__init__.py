"""Why the model decided: per-word attributions for a prediction (or a named label).

PyTorch runs use Integrated Gradients through captum; exported (ONNX) runs, which the
service uses, use occlusion: each word removed in turn, all variants in one batch.
"""
