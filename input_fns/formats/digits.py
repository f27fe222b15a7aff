"""The UCI handwritten digits that ship inside scikit-learn: 1,797 8x8 images, no input files.

The default dataset of //scripts:train; the eval split is a seeded stratified --eval_fraction.
"""

from importlib import metadata

from input_fns import digits as digits_data
from input_fns import splits as splits_lib
from input_fns.formats import base

NAME = digits_data.NAME


def open_source(opts: base.SourceOptions) -> base.Source:
  """Loads the embedded digits and splits them.

  Raises:
    SplitError: a bad --eval_fraction.
  """
  images, labels = digits_data.load()
  split_indices = splits_lib.split_indices(labels, opts.resolved_eval_fraction, opts.seed,
                                           source="the embedded digits")
  used = base.options_used(FORMAT, opts, with_paths=False)
  description = {"format": NAME, **used, "sklearn_version": metadata.version("scikit-learn"),
                 "counts": {k: len(v) for k, v in split_indices.items()}}
  identity = {"format": NAME, **used, "content_sha256": base.digest_arrays(images, labels)}
  return base.ArraySource(digits_data.SPEC, {"image": images}, labels, split_indices,
                          description, identity, record_name=lambda i: f"digits image {i}")


FORMAT = base.Format(name=NAME, open=open_source, options=("eval_fraction", "seed"),
                     summary="the UCI handwritten digits inside scikit-learn (no input needed)")
