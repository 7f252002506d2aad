"""The Trainer module's configuration: model, input pipeline and optimisation."""

import dataclasses
from typing import List, Optional

from fakefaces.components.shared.config_base import FieldError
from fakefaces.components.image_encoder import clip_weights
from fakefaces.components.image_encoder import feature_kinds
from fakefaces.components.image_encoder.policy_names import PRECISIONS

# The CNNs `train.architecture` may name (built in model.py; compared in
# docs/architectures.md). Listed here, free of TensorFlow, so the command line
# can offer them without loading it.
ARCHITECTURE_NAMES = ('baseline', 'vgg10', 'vgg16', 'resnet50', 'densenet121')
# Frozen pretrained backbones with a trained head (image_encoder/clip.py; docs/clip_backbone.md).
BACKBONE_NAMES = ('clip_vit_b16',)
HEADS = ('linear', 'mlp')  # train.head for a backbone: logistic regression, or one hidden layer
# The paper's CNN and the CLIP head in one model, their logits stacked (fused.py).
FUSED = 'fused'
FUSED_CNNS = ('vgg10', 'baseline')  # train.fused_cnn
OWNER = 'train'  # how errors name a TrainConfig built outside a config file

@dataclasses.dataclass
class TrainConfig:
  architecture: str = 'vgg10'  # ARCHITECTURE_NAMES, BACKBONE_NAMES or FUSED; 'vgg10' is the paper's best
  # For a backbone (clip_vit_b16 or fused, which need color_mode rgb and an image_size of
  # feature_kinds.IMAGE_SIZES, 112-224 in steps of 16):
  head: str = 'linear'  # one of HEADS, trained on the frozen embeddings
  # What the head reads from the tower (image_encoder/feature_kinds.py; docs/clip_backbone.md):
  # 'embedding', the final 512-d embedding, or 'class_tokens', the class token after
  # each transformer block, [12, 768], flattened for the head.
  clip_features: str = feature_kinds.EMBEDDING
  # For class_tokens: the blocks whose tokens the head reads, ascending, numbered 1..12;
  # [] is all 12 (9,216 features).
  clip_blocks: List[int] = dataclasses.field(default_factory=list)
  # For fused: the CNN (one of FUSED_CNNS) trained beside the CLIP head; input_filter,
  # full_resolution_convs, horizontal_flip and the augmentations apply to it.
  fused_cnn: str = 'vgg10'
  # For a backbone (or fused's CLIP head): N heads trained on the same cached embeddings at seeds
  # seed ... seed + N - 1, merged exactly into one head whose logit is their mean logit
  # (backbone.merge_heads; docs/clip_backbone.md, "Heads"). 1: one head.
  head_ensemble: int = 1
  # Where frozen embeddings are cached across runs (image_encoder/embedding_cache.py); '' is
  # $XDG_CACHE_HOME/fakefaces/embeddings (~/.cache/... without it).
  embedding_cache_dir: str = ''
  # The backbone's ONNX file; '' is the one in the installed package (clip_weights.py).
  # Either way its sha256 must be clip_weights.SHA256.
  backbone_weights: str = ''
  # px side of the model's square input; crops are resized to it. For a backbone: 224, CLIP's
  # own (196 patch tokens), or a multiple of 16 from 112 (128: the 128 px crops as they are,
  # 64 tokens; docs/clip_backbone.md, "Input size"). Below 224 costs less and transfers worse
  # (128 and 144 px lose held-out SDFD AUC: docs/detection_quality.md), and the annotator's
  # clip_embedding features stay at 224, so the tower then runs twice per crop.
  image_size: int = 128
  color_mode: str = 'grayscale'  # 'grayscale' or 'rgb'
  # Input stage (model.input_stage; docs/detection_quality.md measures each):
  # 'highpass' feeds the image minus its 2x down-up copy (a fixed layer inside the
  # model, so serving applies it too); 'none' feeds pixels.
  input_filter: str = 'none'
  # 3x3 convolutions at full input resolution before the architecture's first pooling.
  full_resolution_convs: int = 0
  epochs: int = 10  # at most; early stopping may end training sooner
  steps_per_epoch: Optional[int] = None  # None: one pass over the train split
  batch_size: int = 32  # examples per training step
  learning_rate: float = 1e-3  # the optimizer's (initial, with the cosine schedule)
  # 'constant', or 'cosine': decays from learning_rate to 0 over epochs x steps per epoch.
  learning_rate_schedule: str = 'constant'
  optimizer: str = 'adam'  # 'adam', 'sgd' or 'rmsprop' (model.OPTIMIZERS)
  dropout: float = 0.0  # dropout rate, [0, 1), after the CNN's dense layer or the MLP head's
  # Weight the loss by inverse class frequency in the train split (total / (2 x count)).
  class_weighting: bool = True
  early_stopping_patience: int = 3  # epochs without improvement of the monitor; 0 disables
  # What early stopping watches and restores the best epoch of: 'val_loss' (the paper's),
  # 'val_auc' or 'val_accuracy'. With class weights and a differently mixed eval split,
  # val_loss can prefer an early epoch whose AUC is far worse (seen on ../shared/data).
  early_stopping_monitor: str = 'val_loss'
  seed: int = 42  # Python, NumPy and TensorFlow seeds (initialisation, shuffling, augmentation)
  validation_steps: Optional[int] = None  # None: the whole eval split each epoch
  shuffle_buffer: int = 2048  # examples (encoded, ~10 KB each at 128 px)
  horizontal_flip: bool = True  # the paper's augmentation; training only
  # 'auto', 'float32', 'mixed_bfloat16' or 'mixed_float16' (image_encoder/precision.py): auto uses
  # bfloat16 only where the CPU or GPU computes it natively (emulated, it is slower).
  precision: str = 'auto'
  deterministic: bool = False  # also enable TF op determinism (slower on GPU)
  # CPU/GPU performance (bench/train.py measures each;
  # docs/performance.md, "Training against the CPU's peak").
  jit_compile: bool = False  # XLA-compile the training step
  intra_op_threads: int = 0  # threads inside one op (a convolution); 0: TensorFlow's default
  inter_op_threads: int = 0  # ops run concurrently; 0: TensorFlow's default
  # Source-shortcut mitigations (mitigation.py, augment.py;
  # docs/training_and_quality.md, "The source shortcut").
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
  augment_probability: float = 0.5  # of each augmentation above, per training image
  # MinDiff (tensorflow-model-remediation): MMD between the scores of real photos whose
  # `min_diff_feature` is in `min_diff_sensitive` and of the other real photos. 0: off.
  min_diff_weight: float = 0.0
  min_diff_feature: str = 'source'  # a string feature (features.STRING_FEATURES)
  # The values of min_diff_feature that make the sensitive group; needed when min_diff_weight > 0.
  min_diff_sensitive: List[str] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    if self.head_ensemble < 1:  # its type is from_dict's check, as every field's
      raise FieldError(OWNER, 'head_ensemble', f'must be an integer >= 1 (heads merged into one), '
                       f'got {self.head_ensemble!r}')
    if self.precision not in PRECISIONS:
      raise FieldError(OWNER, 'precision', f'{self.precision!r} is not one of {list(PRECISIONS)}')
    names = ARCHITECTURE_NAMES + BACKBONE_NAMES + (FUSED,)
    if self.architecture not in names:
      raise FieldError(OWNER, 'architecture', f'{self.architecture!r} is not one of {list(names)}')
    if self.architecture in BACKBONE_NAMES:
      self._check_backbone()
    elif self.architecture == FUSED:
      self._check_fused()
    self._check_ensemble()

  def _check_backbone(self):
    """A backbone's fixed input and unsupported options are refused here, and its weights checked.

    At config load, so a missing package or a wrong file fails before ingestion
    and training, naming the package, its version and the expected sha256.
    """
    self._check_backbone_size('the backbone\'s input')
    fixed = {'color_mode': 'rgb', 'input_filter': 'none', 'full_resolution_convs': 0}
    for field, value in fixed.items():
      if getattr(self, field) != value:
        raise FieldError(OWNER, field, f'must be {value!r} for architecture {self.architecture} '
                         f'(the backbone\'s input), got {getattr(self, field)!r}')
    # The head trains on cached embeddings of the unaugmented crops.
    unsupported = {'balance_sources': False, 'augment_jpeg_quality': [], 'augment_blur_sigma': 0.0,
                   'augment_min_scale': 0.0, 'augment_noise_sigma': 0.0, 'min_diff_weight': 0.0}
    for field, off in unsupported.items():
      if getattr(self, field) != off:
        raise FieldError(OWNER, field, f'is not supported with architecture {self.architecture} '
                         f'(its head trains on cached embeddings of unaugmented crops); set {off!r}')
    self._check_head_and_weights()

  def _check_backbone_size(self, why: str):
    if self.image_size not in feature_kinds.IMAGE_SIZES:
      raise FieldError(OWNER, 'image_size', f'must be one of {list(feature_kinds.IMAGE_SIZES)} '
                       f'for architecture {self.architecture} ({why}: whole '
                       f'{feature_kinds.PATCH} px patches, at most CLIP\'s '
                       f'{feature_kinds.NATIVE_IMAGE_SIZE}), got {self.image_size!r}')

  def _check_ensemble(self):
    # Only a head on cached embeddings merges exactly; a CNN's members would need their own towers.
    if self.head_ensemble > 1 and self.architecture not in BACKBONE_NAMES + (FUSED,):
      raise FieldError(OWNER, 'head_ensemble', f'applies to a head on a backbone '
                       f'({list(BACKBONE_NAMES) + [FUSED]}), not architecture '
                       f'{self.architecture!r}; set 1')

  @property
  def head_blocks(self) -> List[int]:
    """The blocks (1..12) a class-token head reads: `clip_blocks`, or all of them."""
    return list(self.clip_blocks) or list(range(1, feature_kinds.BLOCKS + 1))

  def _check_fused(self):
    """The fused model's CNN, its shared RGB input (a backbone's size), the CLIP head and the weights.

    The CNN trains as any CNN here (augmentation, source balancing); MinDiff is
    refused: it would shape the CNN's scores alone, not the stacked model's.
    """
    if self.fused_cnn not in FUSED_CNNS:
      raise FieldError(OWNER, 'fused_cnn', f'{self.fused_cnn!r} is not one of {list(FUSED_CNNS)}')
    self._check_backbone_size('the CNN and the CLIP backbone share one input')
    if self.color_mode != 'rgb':
      raise FieldError(OWNER, 'color_mode', f'must be \'rgb\' for architecture {FUSED} (the CNN '
                       f'and the CLIP backbone share one input), got {self.color_mode!r}')
    if self.min_diff_weight:
      raise FieldError(OWNER, 'min_diff_weight', f'is not supported with architecture {FUSED} '
                       '(it would train the CNN part only); set 0.0')
    self._check_head_and_weights()

  def _check_head_and_weights(self):
    if self.head not in HEADS:
      raise FieldError(OWNER, 'head', f'{self.head!r} is not one of {list(HEADS)}')
    if self.clip_features not in feature_kinds.KINDS:
      raise FieldError(OWNER, 'clip_features',
                       f'{self.clip_features!r} is not one of {list(feature_kinds.KINDS)}')
    if self.clip_blocks and self.clip_features != feature_kinds.CLASS_TOKENS:
      raise FieldError(OWNER, 'clip_blocks', f'applies to clip_features '
                       f'{feature_kinds.CLASS_TOKENS!r} only (got {self.clip_features!r}); set []')
    numbers = range(1, feature_kinds.BLOCKS + 1)
    if (any(b not in numbers for b in self.clip_blocks) or
        list(self.clip_blocks) != sorted(set(self.clip_blocks))):
      raise FieldError(OWNER, 'clip_blocks', f'{self.clip_blocks!r} must be distinct block '
                       f'numbers in 1..{feature_kinds.BLOCKS}, ascending')
    try:
      clip_weights.checked(self.backbone_weights)
    except clip_weights.BackboneWeightsError as e:
      raise FieldError(OWNER, 'architecture', f'{self.architecture}: {e}') from None
