"""The Trainer module's configuration: model, input pipeline and optimisation."""

import dataclasses
from typing import List, Optional

# train.precision values; precision.py says what each means and what 'auto' picks.
PRECISIONS = ('auto', 'float32', 'mixed_bfloat16', 'mixed_float16')

# The CNNs `train.architecture` may name (built in model.py; compared in
# docs/architectures.md). Listed here, free of TensorFlow, so the command line
# can offer them without loading it.
ARCHITECTURE_NAMES = ('baseline', 'vgg10', 'vgg16', 'resnet50', 'densenet121')

@dataclasses.dataclass
class TrainConfig:
  architecture: str = 'vgg10'  # one of ARCHITECTURE_NAMES; 'vgg10' is the paper's best
  image_size: int = 128
  color_mode: str = 'grayscale'  # 'grayscale' or 'rgb'
  # Input stage (model.input_stage; docs/detection_quality.md measures each):
  # 'highpass' feeds the image minus its 2x down-up copy (a fixed layer inside the
  # model, so serving applies it too); 'none' feeds pixels.
  input_filter: str = 'none'
  # 3x3 convolutions at full input resolution before the architecture's first pooling.
  full_resolution_convs: int = 0
  epochs: int = 10
  steps_per_epoch: Optional[int] = None  # None: one pass over the train split
  batch_size: int = 32
  learning_rate: float = 1e-3
  # 'constant', or 'cosine': decays from learning_rate to 0 over epochs x steps per epoch.
  learning_rate_schedule: str = 'constant'
  optimizer: str = 'adam'
  dropout: float = 0.0
  class_weighting: bool = True
  early_stopping_patience: int = 3  # epochs without improvement of the monitor; 0 disables
  # What early stopping watches and restores the best epoch of: 'val_loss' (the paper's),
  # 'val_auc' or 'val_accuracy'. With class weights and a differently mixed eval split,
  # val_loss can prefer an early epoch whose AUC is far worse (seen on ../shared/data).
  early_stopping_monitor: str = 'val_loss'
  seed: int = 42
  validation_steps: Optional[int] = None  # None: the whole eval split each epoch
  shuffle_buffer: int = 2048  # examples (encoded, ~10 KB each at 128 px)
  horizontal_flip: bool = True  # the paper's augmentation; training only
  # 'auto', 'float32', 'mixed_bfloat16' or 'mixed_float16' (precision.py): auto uses
  # bfloat16 only where the CPU or GPU computes it natively (emulated, it is slower).
  precision: str = 'auto'
  deterministic: bool = False  # also enable TF op determinism (slower on GPU)
  # CPU/GPU performance (bench/train.py measures each; see README "Training speed").
  jit_compile: bool = False  # XLA-compile the training step
  intra_op_threads: int = 0  # threads inside one op (a convolution); 0: TensorFlow's default
  inter_op_threads: int = 0  # ops run concurrently; 0: TensorFlow's default
  # Source-shortcut mitigations (mitigation.py, augment.py; README "No source shortcut").
  # Sampling balanced over source x label (class weights are then off).
  balance_sources: bool = False
  # Processing-history augmentation, training only, each with augment_probability:
  augment_jpeg_quality: List[int] = dataclasses.field(default_factory=list)  # [low, high]
  augment_blur_sigma: float = 0.0  # max Gaussian blur sigma in px; 0: off
  augment_min_scale: float = 0.0  # downscale by a factor in [this, 1) and back; 0: off
  # The resampling filters drawn from, down and up independently (tf.image.resize methods).
  augment_resize_filters: List[str] = dataclasses.field(
      default_factory=lambda: ['area', 'bilinear', 'bicubic', 'lanczos3'])
  augment_jpeg_twice: bool = False  # a second JPEG generation at another random quality
  augment_noise_sigma: float = 0.0  # max std of additive Gaussian noise, [0, 1] pixel units; 0: off
  augment_probability: float = 0.5
  # MinDiff (tensorflow-model-remediation): MMD between the scores of real photos whose
  # `min_diff_feature` is in `min_diff_sensitive` and of the other real photos. 0: off.
  min_diff_weight: float = 0.0
  min_diff_feature: str = 'source'
  min_diff_sensitive: List[str] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    if self.precision not in PRECISIONS:
      raise ValueError(f'train.precision {self.precision!r} is not one of {list(PRECISIONS)}')
