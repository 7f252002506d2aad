"""Learning curves: loss and AUC per epoch, train and validation, as one PNG.

The paper's Figures 1-3 read over- and under-fitting from these curves: a
validation loss that rises while the training loss falls is overfitting; both
staying high is underfitting. The Trainer writes the figure beside
`history.json` in its model_run folder (`LEARNING_CURVES_FILE`), so the model
card and `fakefaces report` can show it without opening TensorBoard.

Plotted with matplotlib's Agg backend (no display needed).
"""

import io
import os
from typing import Dict, Optional, Sequence

import tensorflow as tf

LEARNING_CURVES_FILE = 'learning_curves.png'
# (Keras history key, panel title): the train metric; 'val_' + key is its validation twin.
PANELS = (('loss', 'loss (binary cross-entropy)'), ('auc', 'AUC'))
# 7.5 x 3 inches at 80 dpi: 600 x 240 px, about 30 KB, readable in a model card.
FIGURE_INCHES = (7.5, 3.0)
DPI = 80


def plot_learning_curves(history: Dict[str, Sequence[float]], path: str,
                         title: Optional[str] = None,
                         best_epoch: Optional[int] = None) -> str:
  """Writes loss and AUC per epoch (train and validation) to the PNG `path`; returns it.

  `history` is Keras' `History.history` (lists per metric, one value per
  epoch); `best_epoch` (1-based), when given, is marked with a vertical line
  (the weights early stopping kept). A metric missing from `history` leaves
  its panel with what is there; raises ValueError when it has no loss at all.
  """
  if not history.get('loss'):
    raise ValueError('history has no per-epoch loss to plot')
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')  # files only: no display on a server or in a container
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, axes = plt.subplots(1, len(PANELS), figsize=FIGURE_INCHES, dpi=DPI)
  try:
    for axis, (key, label) in zip(axes, PANELS):
      for name, style in ((key, '-o'), (f'val_{key}', '--s')):
        values = history.get(name)
        if values:
          axis.plot(range(1, len(values) + 1), values, style, markersize=3,
                    label='validation' if name.startswith('val_') else 'train')
      if best_epoch:
        axis.axvline(best_epoch, color='grey', linewidth=0.8, linestyle=':')
      axis.set_title(label, fontsize=9)
      axis.set_xlabel('epoch', fontsize=8)
      axis.tick_params(labelsize=7)
      axis.xaxis.get_major_locator().set_params(integer=True)
      axis.legend(fontsize=7)
      axis.grid(alpha=0.3)
    if title:
      figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
  finally:
    plt.close(figure)
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  with tf.io.gfile.GFile(path, 'wb') as f:  # gfile: model_run dirs may be on GCS
    f.write(buffer.getvalue())
  return path
