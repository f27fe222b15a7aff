"""The kinds of primary input a dataset has; models read them to decide how to read the input.

TensorFlow-free, so the model registry can name what each model reads without importing
TensorFlow; input_fns/feature_spec.py re-exports them (`feature_spec.IMAGE` ...), where the
spec of a dataset records its kind.
"""

IMAGE = "image"  # [H, W, C] pixels
TOKENS = "tokens"  # [T] token ids, 0 is padding
VECTOR = "vector"  # [D] numeric features

KINDS = (IMAGE, TOKENS, VECTOR)
