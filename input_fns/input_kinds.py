"""The kinds of primary input a dataset has; models read them to decide how to read the input.

TensorFlow-free, so the model registry can name what each model reads without importing
TensorFlow; input_fns/feature_spec.py re-exports them (`feature_spec.IMAGE` ...), where the
spec of a dataset records its kind.
"""

IMAGE = "image"  # [H, W, C] pixels
TOKENS = "tokens"  # [T] token ids, 0 is padding
VECTOR = "vector"  # [D] numeric features
TABLE = "table"  # many named columns: numeric, categorical, text (feature roles)

KINDS = (IMAGE, TOKENS, VECTOR, TABLE)

# What the label of a dataset is, and so which head a model_fn uses (model_fns/head.py).
MULTICLASS = "multiclass"  # an int64 class id in [0, C), C >= 2
BINARY = "binary"  # an int64 class id in {0, 1}; class 1 is the positive class
REGRESSION = "regression"  # a float32 target

LABEL_KINDS = (MULTICLASS, BINARY, REGRESSION)

# Roles of the columns of a TABLE (input_fns/feature_spec.py); "" is a plain fixed tensor.
NUMERIC = "numeric"  # float32 numbers; NaN = missing
CATEGORICAL = "categorical"  # string or int64 ids, one or several per example
TEXT = "text"  # one string

ROLES = ("", NUMERIC, CATEGORICAL, TEXT)
