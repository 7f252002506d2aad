"""Quality report on the shared face data, in the layout of the paper's Tables 4-8.

Reads the images straight from the folders of the shared data set (its
`manifest.csv`: path,label,source,gender,race,age,split) through the training
input pipeline, so no TFX run is needed:

* train:      gan_faces/train (real + fake) and FairFace train (all real),
              except a deterministic 10% of FairFace train held for validation;
* validation: gan_faces/valid and that 10% (early stopping only);
* test:       gan_faces/test and FairFace val, never seen in training.

Per model it writes its size (parameters, forward GFLOP per image), its
learning curves (OUT/<architecture>/learning_curves.png, linked from
report.md) and one table per breakdown (overall, per source, and per
gender / race / age on FairFace, whose images are all real), columns Accuracy,
F1, Precision, Recall, AUC plus counts and the false-positive rate. Metrics a
group cannot support (recall without fakes, AUC with one class) are null in
JSON and 'n/a' in markdown, never a made-up number.

Beside the CNNs, the spectral floor (spectral.py: logistic regression on a
64-number radial power spectrum) is trained on the same training images and
scored on the same test images; per source, the report says whether each CNN
beats it ("floor" section), and a CNN that does not is reported as such.
"""

import csv
import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from sklearn import metrics as sk_metrics

from fakefaces.components.shared import features, reports
from fakefaces.components.shared.split_hash import unit_hash
from fakefaces.components.trainer import curves, data, export, flops, operating_point, spectral, training
from fakefaces.components.trainer.config import TrainConfig

TRAIN, VALIDATION, TEST = 'train', 'validation', 'test'
FAIRFACE, GAN_FACES = 'fairface', 'gan_faces'
FAIRFACE_VALIDATION_FRACTION = 0.1
REPORT_MD, REPORT_JSON, PREDICTIONS_CSV = 'report.md', 'report.json', 'predictions.csv'
METRIC_COLUMNS = ('accuracy', 'f1', 'precision', 'recall', 'auc', 'fpr')
COUNT_COLUMNS = ('n', 'n_real', 'n_fake')
# (table title, manifest column to group by or None for overall, sources it covers)
TABLES = (
    ('Table 4: overall, held-out test set', None, (GAN_FACES, FAIRFACE)),
    ('Table 5: by source', 'source_dir', (GAN_FACES, FAIRFACE)),
    ('Table 6: by gender (FairFace val, real photos only)', features.GENDER, (FAIRFACE,)),
    ('Table 7: by race (FairFace val, real photos only)', features.RACE, (FAIRFACE,)),
    ('Table 8: by age (FairFace val, real photos only)', features.AGE, (FAIRFACE,)),
)


class DataNotFoundError(FileNotFoundError):
  """The shared face data is not at the given folder."""


@dataclasses.dataclass
class Item:
  path: str  # absolute
  label: int
  source_dir: str  # first path component: gan_faces or fairface
  gender: str
  race: str
  age: str
  role: str  # train / validation / test


def _role(source_dir: str, split: str, rel_path: str) -> Optional[str]:
  if source_dir == GAN_FACES:
    return {'train': TRAIN, 'valid': VALIDATION, 'test': TEST}.get(split)
  if source_dir == FAIRFACE:
    if split == 'val':
      return TEST
    if split == 'train':
      return VALIDATION if unit_hash(rel_path) < FAIRFACE_VALIDATION_FRACTION else TRAIN
  return None


def read_items(data_dir: str) -> List[Item]:
  """The shared data set's manifest as Items; raises DataNotFoundError when absent."""
  manifest = os.path.join(data_dir, 'manifest.csv')
  if not os.path.isfile(manifest):
    raise DataNotFoundError(
        f'no manifest.csv in {data_dir}: expected the shared face data layout '
        '(manifest.csv, fairface/, gan_faces/; see its README.md)')
  items = []
  with open(manifest, newline='', encoding='utf-8') as f:
    for line, row in enumerate(csv.DictReader(f), start=2):
      label = {'real': features.REAL, 'fake': features.FAKE}.get(row['label'])
      if label is None:
        raise ValueError(f'{manifest}:{line}: label must be real or fake, got {row["label"]!r}')
      source_dir = row['path'].split('/', 1)[0]
      role = _role(source_dir, row['split'], row['path'])
      if role is None:
        continue
      items.append(Item(os.path.join(data_dir, row['path']), label, source_dir,
                        row.get(features.GENDER) or features.UNKNOWN,
                        row.get(features.RACE) or features.UNKNOWN,
                        row.get(features.AGE) or features.UNKNOWN, role))
  return items


def subsample(items: List[Item], max_images: Optional[int], seed: int) -> List[Item]:
  """At most `max_images` per role, drawn in proportion to each (source, label) stratum."""
  if not max_images:
    return items
  picked = []
  for role in (TRAIN, VALIDATION, TEST):
    role_items = [i for i in items if i.role == role]
    cap = max_images if role != VALIDATION else max(2, max_images // 4)
    strata: Dict[Any, List[Item]] = {}
    for item in role_items:
      strata.setdefault((item.source_dir, item.label), []).append(item)
    for stratum in strata.values():
      k = max(1, round(cap * len(stratum) / len(role_items)))
      picked += sorted(stratum, key=lambda i: unit_hash(f'{seed}:{i.path}'))[:k]
  return picked


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray,
                   threshold: float = 0.5) -> Dict[str, Optional[float]]:
  """Counts and metrics for label 1 = fake; None where the group cannot define one."""
  labels = np.asarray(labels, int)
  predicted = np.asarray(probabilities) >= threshold
  tp = int(np.sum(predicted & (labels == 1)))
  fp = int(np.sum(predicted & (labels == 0)))
  fn = int(np.sum(~predicted & (labels == 1)))
  tn = int(np.sum(~predicted & (labels == 0)))
  n_fake, n_real = tp + fn, tn + fp

  def ratio(a, b):
    return a / b if b else None

  precision, recall = ratio(tp, tp + fp), ratio(tp, n_fake)
  if precision is None or recall is None:
    f1 = None
  else:
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  auc = (float(sk_metrics.roc_auc_score(labels, probabilities)) if n_fake and n_real else None)
  return {'n': len(labels), 'n_real': n_real, 'n_fake': n_fake,
          'accuracy': ratio(tp + tn, len(labels)), 'f1': f1, 'precision': precision,
          'recall': recall, 'auc': auc, 'fpr': ratio(fp, n_real)}


def breakdown(items: Sequence[Item], probabilities: np.ndarray,
              threshold: float) -> List[Dict[str, Any]]:
  """Rows of Tables 4-8 for one model's test predictions."""
  tables = []
  for title, column, covered in TABLES:
    rows = []
    subset = [k for k, item in enumerate(items) if item.source_dir in covered]
    present = {getattr(items[k], column) for k in subset} if column else set()
    vocabulary = list(features.VOCABULARIES.get(column, ())) + [features.UNKNOWN]
    groups = (['all'] if column is None else  # vocabulary order (ages ascend), then the rest
              [g for g in vocabulary if g in present] + sorted(present - set(vocabulary)))
    for group in groups:
      index = [k for k in subset if column is None or getattr(items[k], column) == group]
      rows.append({'group': group,
                   **binary_metrics(np.array([items[k].label for k in index]),
                                    probabilities[index], threshold)})
    tables.append({'title': title, 'group_by': column or 'all', 'rows': rows})
  return tables


def format_value(value) -> str:
  if value is None:
    return 'n/a'
  return f'{value:.3f}' if isinstance(value, float) else str(value)


def to_markdown(report: Dict[str, Any]) -> str:
  lines = ['# Quality report', '',
           f"Data: `{report['data_dir']}`; train {report['counts'][TRAIN]}, validation "
           f"{report['counts'][VALIDATION]}, test {report['counts'][TEST]} images; decision "
           f"threshold {report['decision_threshold']}. Fake is the positive class.", '',
           'FairFace contributes real photos only, so on it accuracy is 1 - FPR, and a model can '
           'score well there by recognising the source (224 px loose crops, not 128 px aligned '
           'faces) rather than GAN traces. Table 5\'s gan_faces rows are the detection skill; '
           'n/a marks a metric the group cannot define (e.g. recall without fakes).', '',
           '## Models and learning curves', '',
           '| Model | Parameters | GFLOP per image | Epochs | Learning curves |',
           '|---|---|---|---|---|']
  for model in report['models']:
    lines.append(f"| {model['architecture']} | {model['parameters']:,} | "
                 f"{model['forward_gflop_per_image']:.3f} | {model['epochs_run']} | "
                 f"![{model['architecture']}]({model['learning_curves']}) |")
  lines.append('')
  header = ['Model', 'Group', 'N', 'Real', 'Fake', 'Accuracy', 'F1', 'Precision', 'Recall', 'AUC',
            'FPR']
  for t, (title, _, _) in enumerate(TABLES):
    lines += [f'## {title}', '', '| ' + ' | '.join(header) + ' |',
              '|' + '---|' * len(header)]
    for model in report['models']:
      for row in model['tables'][t]['rows']:
        cells = [model['architecture'], row['group']] + [
            format_value(row[c]) for c in COUNT_COLUMNS + METRIC_COLUMNS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  if report.get('floor'):
    lines += ['## Spectral floor (radial power spectrum + logistic regression, same crops)', '',
              '| Model | Source | CNN AUC | Floor AUC | Beats the floor |', '|---|---|---|---|---|']
    for row in report['floor']:
      verdict = {True: 'yes', False: '**no: does not beat the spectral floor**',
                 None: 'n/a'}[row['beats_floor']]
      lines.append(f"| {row['architecture']} | {row['source']} | {format_value(row['cnn_auc'])} | "
                   f"{format_value(row['floor_auc'])} | {verdict} |")
    lines.append('')
  return '\n'.join(lines)


def run_report(data_dir: str, out_dir: str, base_config: TrainConfig,
               architectures: Sequence[str] = ('vgg10',), max_images: Optional[int] = None,
               decision_threshold: Optional[float] = 0.5, export_models: bool = False,
               target_fpr: Optional[float] = None) -> Dict[str, Any]:
  """Trains each architecture, evaluates on the test part, writes report.{md,json}.

  `decision_threshold` None: each model's threshold is chosen for `target_fpr` on
  the validation part, as the Trainer does on the eval split (operating_point.py).
  """
  items = subsample(read_items(data_dir), max_images, base_config.seed)
  by_role = {role: [i for i in items if i.role == role] for role in (TRAIN, VALIDATION, TEST)}
  for role, role_items in by_role.items():
    if not role_items:
      raise ValueError(f'no {role} images found under {data_dir}')
  os.makedirs(out_dir, exist_ok=True)
  test = by_role[TEST]
  report = {'data_dir': os.path.abspath(data_dir),
            'decision_threshold': (decision_threshold if decision_threshold is not None
                                   else f'chosen per model for FPR {target_fpr} on {VALIDATION}'),
            'counts': {role: len(v) for role, v in by_role.items()},
            'columns': list(COUNT_COLUMNS + METRIC_COLUMNS), 'models': []}
  predictions = {}
  # The floor sees the images exactly as the CNNs do (same decode, no augmentation).
  floor_config = dataclasses.replace(base_config, architecture=architectures[0])

  def floor_dataset(role):
    return data.files_dataset([i.path for i in by_role[role]], [i.label for i in by_role[role]],
                              floor_config, training=False)

  floor_model = spectral.fit_floor_spectra(*spectral.dataset_spectra(floor_dataset(TRAIN)),
                                           seed=base_config.seed)
  test_spectra, _ = spectral.dataset_spectra(floor_dataset(TEST))
  floor_probabilities = floor_model.predict_proba(test_spectra)[:, 1]
  test_sources = np.array([i.source_dir for i in test])
  test_labels = np.array([i.label for i in test])
  report['floor'] = []
  for architecture in architectures:
    config = dataclasses.replace(base_config, architecture=architecture)

    def dataset(role, training_mode):
      return data.files_dataset([i.path for i in by_role[role]], [i.label for i in by_role[role]],
                                config, training=training_mode)

    train_items = by_role[TRAIN]
    counts = {features.REAL: sum(i.label == features.REAL for i in train_items),
              features.FAKE: sum(i.label == features.FAKE for i in train_items)}
    run_dir = os.path.join(out_dir, architecture)
    training.seed_everything(config)  # before the datasets: their shuffles read the global seed
    model, history = training.train(config, dataset(TRAIN, True), dataset(VALIDATION, False),
                                    counts, run_dir)
    point = operating_point.choose(
        *reversed(training.predict_probabilities(model, dataset(VALIDATION, False))),
        target_fpr, decision_threshold, split=VALIDATION)
    threshold = point.decision_threshold
    probabilities, labels = training.predict_probabilities(model, dataset(TEST, False))
    if list(labels) != [i.label for i in test]:  # the eval-mode dataset must keep file order
      raise RuntimeError('test predictions came back out of order')
    predictions[architecture] = probabilities
    if export_models:
      export.export_saved_model(model, os.path.join(run_dir, 'saved_model'), config.image_size,
                                config.color_mode, threshold, operating_point=point.to_dict())
    size = flops.model_size(model)
    report['models'].append({'architecture': architecture, 'epochs_run': history['epochs_run'],
                             'parameters': size['parameters'],
                             'forward_gflop_per_image': size['forward_gflop_per_image'],
                             # relative to out_dir; written by training.train
                             'learning_curves': f'{architecture}/{curves.LEARNING_CURVES_FILE}',
                             'config': dataclasses.asdict(config),
                             'operating_point': point.to_dict(),
                             'test_operating_point': operating_point.measure(
                                 labels, probabilities, threshold, point.chosen_by, target_fpr,
                                 TEST).to_dict(),
                             'tables': breakdown(test, probabilities, threshold)})
    for source in sorted(set(test_sources.tolist())):
      m = test_sources == source
      report['floor'].append(dict(architecture=architecture, source=source, **spectral.compare(
          spectral.auc_or_none(test_labels[m], probabilities[m]),
          spectral.auc_or_none(test_labels[m], floor_probabilities[m]))))
  predictions['spectral_floor'] = floor_probabilities
  reports.write_report(out_dir, report, REPORT_JSON)
  with open(os.path.join(out_dir, REPORT_MD), 'w', encoding='utf-8') as f:
    f.write(to_markdown(report))
  with open(os.path.join(out_dir, PREDICTIONS_CSV), 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'source', 'label'] + [f'p_fake_{a}' for a in predictions])
    for k, item in enumerate(test):
      writer.writerow([os.path.relpath(item.path, data_dir), item.source_dir, item.label] +
                      [f'{p[k]:.6f}' for p in predictions.values()])
  return report
