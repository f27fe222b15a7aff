"""Serving: SavedModels for TF Serving, checked before anyone can load them.

  export.py      one SavedModel, three signatures, per version; latest/best/final exporters
  validation.py  the parity check: the export, loaded in a separate serving process, answers as predict
  warmup.py      TF Serving warm-up requests written into each version
  publish.py     copying versions to gs:// so TF Serving never sees half a version
  export_job.py  one export of a finished run: resolve, export, validate, publish

See docs/serving.md.
"""
