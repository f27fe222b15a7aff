r"""Converts a source dataset into sharded TFRecords plus manifest.json, in parallel.

  ./bazelw run //scripts:make_tfrecords -- --format=digits --output_dir=data/digits
  ./bazelw run //scripts:make_tfrecords -- --format=idx \
      --images=train-images-idx3-ubyte.gz --labels=train-labels-idx1-ubyte.gz \
      --eval_images=t10k-images-idx3-ubyte.gz --eval_labels=t10k-labels-idx1-ubyte.gz \
      --output_dir=data/mnist --num_shards=8
  ./bazelw run //scripts:make_tfrecords -- --format=csv --input=iris.csv \
      --label_column=species --output_dir=data/iris
  ./bazelw run //scripts:make_tfrecords -- --format=image_dir --input=photos/ \
      --image_size=64,64 --output_dir=gs://my-bucket/datasets/photos --compression=GZIP
  ./bazelw run //scripts:make_tfrecords -- --format=text --input=reviews.tsv \
      --max_length=128 --output_dir=data/reviews

Rerunning the same command finishes an interrupted conversion (complete shards are kept) or
does nothing if it already finished; an output location holding another dataset is refused.
Relative paths are taken from the directory you ran the command in.
"""

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from input_fns import manifest as manifest_lib
from input_fns import writer
from input_fns.formats import registry
from scripts import make_tfrecords_flags


def convert(cfg: make_tfrecords_flags.MakeTfrecordsConfig) -> manifest_lib.Manifest:
  """Opens the source and writes (or resumes, or confirms) the dataset.

  Raises:
    errors.UserInputError: whatever is wrong with the input, options or output location.
  """
  source = registry.open_source(cfg.format, cfg.source)
  return writer.write(cfg.output_dir, source, cfg.write)


def main(argv):
  del argv
  print(convert(make_tfrecords_flags.config_from_flags()).describe())


if __name__ == "__main__":
  flags.mark_flag_as_required("format")
  flags.mark_flag_as_required("output_dir")
  cli.run(main)
