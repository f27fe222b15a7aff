r"""Converts a source dataset into sharded TFRecords plus manifest.json, in parallel.

  ./bazelw run //scripts:make_tfrecords -- --format=digits --output_dir=data/digits
  ./bazelw run //scripts:make_tfrecords -- --format=idx \
      --images=train-images-idx3-ubyte.gz --labels=train-labels-idx1-ubyte.gz \
      --eval_images=t10k-images-idx3-ubyte.gz --eval_labels=t10k-labels-idx1-ubyte.gz \
      --output_dir=data/mnist --num_shards=8
  ./bazelw run //scripts:make_tfrecords -- --format=csv --input=iris.csv \
      --label_column=species --output_dir=data/iris
  ./bazelw run //scripts:make_tfrecords -- --format=csv --input=adult.data \
      --column_names=age,workclass,fnlwgt,education,education_num,marital_status,occupation,\
relationship,race,sex,capital_gain,capital_loss,hours_per_week,native_country,income \
      --label_column=income --label_map='<=50K=0,>50K=1' --missing='?' \
      --eval_input=adult.eval.csv --output_dir=data/adult --describe
  # ... then edit data/adult.schema.json (column types) and convert with it:
  ./bazelw run //scripts:make_tfrecords -- --format=csv --input=adult.data ... \
      --schema=data/adult.schema.json --output_dir=data/adult
  ./bazelw run //scripts:make_tfrecords -- --format=parquet --input=rides.parquet \
      --label_column=fare --label_kind=regression --columns=ride_id:skip,zone:hash=1024 \
      --output_dir=data/rides
  ./bazelw run //scripts:make_tfrecords -- --format=image_dir --input=photos/ \
      --image_size=64,64 --output_dir=gs://my-bucket/datasets/photos --compression=GZIP
  ./bazelw run //scripts:make_tfrecords -- --format=text --input=reviews.tsv \
      --max_length=128 --output_dir=data/reviews

Tables (csv, tsv, parquet, jsonl) print a per-column summary before writing; --describe stops
after it, having written the inferred schema. Rerunning the same command finishes an
interrupted conversion (complete shards are kept) or does nothing if it already finished; an
output location holding another dataset is refused. Relative paths are taken from the
directory you ran the command in.
"""

from typing import Callable, Optional

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from input_fns import manifest as manifest_lib
from input_fns import writer
from input_fns.formats import registry
from scripts import make_tfrecords_flags


def convert(cfg: make_tfrecords_flags.MakeTfrecordsConfig,
            show: Callable[[str], None] = print) -> Optional[manifest_lib.Manifest]:
  """Opens the source, shows its summary and writes (or resumes, or confirms) the dataset.

  Args:
    cfg: the conversion.
    show: prints the source's summary (tables: one line per column).

  Returns:
    The dataset's manifest; None after a dry run (--describe), which writes no shards.

  Raises:
    errors.UserInputError: whatever is wrong with the input, options or output location.
  """
  with registry.open_source(cfg.format, cfg.source) as source:
    summary = source.summary()
    if summary:
      show(summary)
    if source.describe_only:
      return None
    return writer.write(cfg.output_dir, source, cfg.write)


def main(argv):
  del argv
  m = convert(make_tfrecords_flags.config_from_flags())
  if m is not None:
    print(m.describe())


if __name__ == "__main__":
  flags.mark_flag_as_required("format")
  flags.mark_flag_as_required("output_dir")
  cli.run(main)
