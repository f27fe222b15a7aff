"""The UCI handwritten digits that ship inside scikit-learn: the embedded default dataset.

1,797 real 8x8 grey-level images (values 0..16) of the digits 0-9; no download needed.
"""

from typing import Iterator, Tuple

import numpy as np

from input_fns import feature_spec
from input_fns import splits

NAME = "digits"
SPEC = feature_spec.image_spec(8, 8, 1, [str(d) for d in range(10)], value_range=(0, 16))


def load() -> Tuple[np.ndarray, np.ndarray]:
  """Returns (images uint8 [N, 8, 8, 1], labels int64 [N]) in the package's order."""
  # Imported here: scikit-learn takes ~0.9 s to import, and only a run that writes the default
  # dataset needs it.
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  d = sk_datasets.load_digits()
  images = d.images.astype(np.uint8)[..., np.newaxis]
  return images, d.target.astype(np.int64)


def examples(eval_fraction: float, seed: int) -> Iterator[Tuple[str, dict, int]]:
  """Yields (split, values, label) for every example, split stratified and seeded."""
  images, labels = load()
  split_of = splits.stratified_split(labels, eval_fraction, seed)
  for image, label, split in zip(images, labels, split_of):
    yield split, {"image": image}, int(label)
