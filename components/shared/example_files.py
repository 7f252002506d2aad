"""The TFRecord files of an Examples artifact's splits, and how to read them.

Every reader of examples (the DataGate, the DemographicAnnotator, the Trainer,
the ServingCanary, `fakefaces gate`) finds a split's files and decides their
compression here, so they agree: the files of a split are everything in its
`Split-<name>/` folder, sorted; a file is GZIP-compressed when its name ends
in `.gz` (FaceExampleGen, the annotator and TFX's own ExampleGen all write
`*.gz`), else uncompressed.
"""

import os
from typing import List, Sequence, Union

import tensorflow as tf
from tfx.types import artifact_utils


def compression_of(path: str) -> str:
  """TFRecord compression of the file at `path`: 'GZIP' for a `.gz` name, else ''."""
  return 'GZIP' if path.endswith('.gz') else ''


def split_dir(examples_dir: str, split: str) -> str:
  """The folder of `split` inside an Examples folder: `<examples_dir>/Split-<split>` (TFX's layout)."""
  return os.path.join(examples_dir, f'Split-{split}')


def files_matching(file_patterns: Union[str, Sequence[str]]) -> List[str]:
  """The files matching any of the glob patterns (e.g. TFX's `.../Split-train/*`), sorted.

  Raises:
    ValueError: no file matches, naming the patterns.
  """
  if isinstance(file_patterns, str):
    file_patterns = [file_patterns]
  files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f'no TFRecord files match {list(file_patterns)}')
  return files


def split_files(examples, split: str) -> List[str]:
  """The TFRecord files of `split` of an Examples artifact, sorted.

  Args:
    examples: the Examples artifact, or its folder (which holds `Split-<split>/`)
      when read outside a pipeline.
    split: the split's name, e.g. 'train'.

  Raises:
    ValueError: the artifact has no such split, or its folder holds no file
      (naming the split and the folder).
  """
  if isinstance(examples, str):
    folder = split_dir(examples, split)
  else:
    splits = artifact_utils.decode_split_names(examples.split_names)
    if split not in splits:
      raise ValueError(f'split {split!r} is not in the examples at {examples.uri} '
                       f'(splits: {splits})')
    folder = artifact_utils.get_split_uri([examples], split)
  files = sorted(tf.io.gfile.glob(os.path.join(folder, '*')))
  if not files:
    raise ValueError(f'split {split!r} has no files under {folder}')
  return files


def records(files: Union[str, Sequence[str]], **kwargs) -> tf.data.TFRecordDataset:
  """The serialized records of `files` in order, decompressed as `compression_of` says.

  Args:
    files: one path or a non-empty list of paths of the same kind (the first
      decides the compression: the files of one split are written alike).
    **kwargs: passed to tf.data.TFRecordDataset (e.g. num_parallel_reads).
  """
  first = files if isinstance(files, str) else files[0]
  return tf.data.TFRecordDataset(files, compression_type=compression_of(first), **kwargs)
