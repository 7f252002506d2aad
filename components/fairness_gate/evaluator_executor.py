"""The pipeline's Evaluator, at the models' own operating points, on cached backbone features.

TFX's Evaluator takes its EvalConfig as an execution property, fixed when the
pipeline is built, before the Trainer has chosen the decision threshold. This
executor is TFX's own, run after two changes:

1. It reads the candidate's threshold (and the production model's, when there
   is one) from the models (`serving_contract.read_decision_threshold`) and
   rewrites every thresholded metric of the EvalConfig with
   `eval_config.at_operating_point`, so TFMA's bounds, counts and the
   FairnessGate all judge where the served `label` decides.
2. A model with a frozen backbone (clip_vit_b16, fused) carries
   assets/backbone_features.json (`serving_contract.read_backbone_features`):
   which features its head reads and the embedding cache the Trainer (and the
   DemographicAnnotator) filled. For such a model the executor writes its own
   copy of the evaluated splits, each example with `backbone_features`
   (features.py) read from that cache (`Embedder.head_features`: a crop not
   cached yet goes through the tower once, into the cache), to
   `<evaluation>/_backbone_examples/`, runs TFMA on it with the model's
   `from_backbone_examples` signature, and removes the copy. The tower runs for
   no crop already cached, and the scores are the served model's: the same
   layers after the tower on the tower's float32 features, computed by the same
   decode and tower as the served model's own (docs/clip_backbone.md: the head
   on cached features against the SavedModel, within 1e-4). A model without
   the file (a CNN, an older model) keeps `from_examples`, on the same copy
   (the signature reads `image` only). Without a cache for the candidate's
   backbone (its folder absent, or other weights installed) every model keeps
   `from_examples` on the original examples, and the log says so.

What was scored how goes to `<evaluation>/backbone_features.json` (BACKBONE_REPORT):
each model's signature, the crops read from the cache and those computed.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf
from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, path_utils
import tensorflow_model_analysis as tfma
from google.protobuf import json_format

from fakefaces.components.shared import example_files, features, reports
from fakefaces.components.shared import serving_contract
from fakefaces.components.image_encoder import clip_weights
from fakefaces.components.image_encoder.embedder import Embedder
from fakefaces.components.fairness_gate import eval_config as eval_config_lib

# The examples with backbone_features, under the evaluation's uri while TFMA runs.
BACKBONE_EXAMPLES_FOLDER = '_backbone_examples'
# In the evaluation's uri: {'signatures': {model name: signature}, 'computed', 'reused', ...}.
BACKBONE_REPORT = 'backbone_features.json'
_BATCH = 256  # examples read, embedded and written at a time


@dataclasses.dataclass(frozen=True)
class _EncoderSettings:
  """The Embedder's settings (embedder.EncoderSettings), from a model's BackboneFeatures."""
  backbone_weights: str
  embedding_cache_dir: str
  image_size: int


def _encoder_settings(wanted: serving_contract.BackboneFeatures) -> _EncoderSettings:
  return _EncoderSettings(wanted.backbone_weights, wanted.embedding_cache_dir, wanted.image_size)


def _model_dir(models: List[types.Artifact]) -> str:
  return path_utils.serving_model_path(artifact_utils.get_single_instance(models).uri)


def _cache_missing(wanted: serving_contract.BackboneFeatures) -> Optional[str]:
  """Why the Evaluator cannot read `wanted` from a cache, or None when it can."""
  if wanted.backbone_sha256 != clip_weights.SHA256:
    return (f'the model\'s backbone (sha256 {wanted.backbone_sha256[:16]}...) is not the '
            f'installed one ({clip_weights.SHA256[:16]}...)')
  folder = Embedder(_encoder_settings(wanted)).cache.folder
  if not tf.io.gfile.isdir(folder):
    return f'no embedding cache at {folder}'
  return None


def _same_features(a: Optional[serving_contract.BackboneFeatures],
                   b: serving_contract.BackboneFeatures) -> bool:
  """Whether a model reading `a` can score `b`'s features: same backbone, input size, kind and
  blocks."""
  return a is not None and ((a.backbone_sha256, a.image_size, a.kind, a.blocks)
                            == (b.backbone_sha256, b.image_size, b.kind, b.blocks))


def write_backbone_examples(examples: types.Artifact, splits: List[str],
                            wanted: serving_contract.BackboneFeatures,
                            folder: str) -> Tuple[types.Artifact, Dict[str, Any]]:
  """A copy of `splits` of `examples` in `folder`, each example with its `backbone_features`.

  The features are `wanted`'s (`Embedder.head_features` on the example's
  `image`), read from the cache, or computed by the tower and cached.

  Returns:
    (an Examples artifact of `folder` with `splits`, like `examples` otherwise;
    {'examples': n, 'computed': crops through the tower, 'reused': crops read
    from the cache, 'cache': its folder}).
  """
  embedder = Embedder(_encoder_settings(wanted))
  count = 0
  for split in splits:
    out_dir = example_files.split_dir(folder, split)
    tf.io.gfile.makedirs(out_dir)
    records = example_files.records(example_files.split_files(examples, split))
    with tf.io.TFRecordWriter(os.path.join(out_dir, 'data.tfrecord.gz'), options='GZIP') as writer:
      for batch in records.batch(_BATCH):
        serialized = batch.numpy().tolist()
        images = tf.io.parse_example(batch, {features.IMAGE: tf.io.FixedLenFeature(
            [], tf.string)})[features.IMAGE].numpy().tolist()
        vectors = embedder.head_features(images, wanted.kind, wanted.blocks)
        for record, vector in zip(serialized, vectors):
          example = tf.train.Example.FromString(record)
          value = example.features.feature[features.BACKBONE_FEATURES].float_list.value
          del value[:]
          value.extend(vector.tolist())
          writer.write(example.SerializeToString())
        count += len(serialized)
  copy = examples.__class__()
  copy.copy_from(examples)
  copy.uri = folder
  copy.split_names = artifact_utils.encode_split_names(list(splits))
  return copy, {'examples': count, 'computed': embedder.cache.computed,
                'reused': embedder.cache.reused, 'cache': embedder.cache.folder}


class Executor(tfx_evaluator_executor.Executor):
  """TFX's Evaluator executor at the models' own thresholds, on cached backbone features."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    key = standard_component_specs.EVAL_CONFIG_KEY
    config = tfma.EvalConfig()
    json_format.Parse(exec_properties[key], config)
    model_dirs = {tfma.CANDIDATE_KEY: _model_dir(input_dict[standard_component_specs.MODEL_KEY])}
    baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
    if baseline:
      model_dirs[tfma.BASELINE_KEY] = _model_dir(baseline)
    config = eval_config_lib.at_operating_point(
        config, serving_contract.read_decision_threshold(model_dirs[tfma.CANDIDATE_KEY]),
        serving_contract.read_decision_threshold(model_dirs[tfma.BASELINE_KEY])
        if baseline else None)
    # The defaults TFX's Do applies (it applies them again, unchanged): the model specs
    # named candidate and baseline, so each can get its own signature.
    config = tfma.utils.update_eval_config_with_defaults(config, has_baseline=bool(baseline),
                                                         rubber_stamp=True)
    output_uri = artifact_utils.get_single_uri(
        output_dict[standard_component_specs.EVALUATION_KEY])
    read = {name: serving_contract.read_backbone_features(d) for name, d in model_dirs.items()}
    wanted = read[tfma.CANDIDATE_KEY] or read.get(tfma.BASELINE_KEY)
    report = {'signatures': {name: serving_contract.EXAMPLES_SIGNATURE for name in model_dirs}}
    why_not = (f'no model has {serving_contract.BACKBONE_FEATURES_FILE}' if wanted is None
               else _cache_missing(wanted))
    folder = None
    if why_not:
      logging.info('Evaluator: %s; every model scores from_examples (the tower on every image)',
                   why_not)
      report['fallback'] = why_not
    else:
      for spec in config.model_specs:
        name = spec.name or tfma.CANDIDATE_KEY
        if _same_features(read.get(name), wanted):
          spec.signature_name = serving_contract.BACKBONE_EXAMPLES_SIGNATURE
          report['signatures'][name] = spec.signature_name
      splits = json_utils.loads(
          exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY, 'null')) or ['eval']
      folder = os.path.join(output_uri, BACKBONE_EXAMPLES_FOLDER)
      examples, counts = write_backbone_examples(
          artifact_utils.get_single_instance(input_dict[standard_component_specs.EXAMPLES_KEY]),
          splits, wanted, folder)
      report.update(counts, splits=splits, kind=wanted.kind, blocks=list(wanted.blocks))
      logging.info('Evaluator: %d examples of %s with %s from %s (%d crops read from the cache, '
                   '%d through the tower); signatures %s', counts['examples'], splits,
                   wanted.kind, counts['cache'], counts['reused'], counts['computed'],
                   report['signatures'])
      input_dict = dict(input_dict, **{standard_component_specs.EXAMPLES_KEY: [examples]})
    exec_properties = dict(exec_properties, **{key: json_format.MessageToJson(config)})
    try:
      super().Do(input_dict, output_dict, exec_properties)
    finally:
      if folder and tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)
    reports.write_report(output_uri, report, BACKBONE_REPORT)
