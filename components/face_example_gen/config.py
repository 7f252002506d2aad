"""FaceExampleGen's configuration: the input sources and how faces are found and aligned."""

import dataclasses
from typing import List

@dataclasses.dataclass
class SourceConfig:
  """One input dataset. `kind` selects the layout reader."""
  kind: str  # 'fairface' | 'kaggle140k' | 'folders' | 'manifest'
  path: str  # root folder (fairface/kaggle140k/folders) or CSV file (manifest)
  name: str = ''  # value of the `source` feature; defaults to `kind`
  # 'train': split as usual. 'audit': judged but never trained on; every input goes to
  # the test split. For sources that exist in one class only (FairFace: reals, no fakes),
  # which a model would otherwise learn as "looks like this source -> real".
  role: str = 'train'
  # '' follows ingest.align. 'none' for a source whose images are FFHQ-aligned already
  # (FFHQ, 140k, thispersondoesnotexist): dlib's re-alignment resamples every pixel and
  # removes the GAN evidence a detector needs (docs/detection_quality.md). Photos from
  # users, and audit sources like FairFace, keep 'dlib'.
  align: str = ''


@dataclasses.dataclass
class IngestConfig:
  sources: List[SourceConfig] = dataclasses.field(default_factory=list)
  # 'dlib' detects and FFHQ-aligns every face; 'none' only re-encodes images that
  # are already aligned crops (the generated demo data, the 140k set).
  align: str = 'dlib'
  # 'hog' (fast), 'cnn' (mmod, finds more faces, ~10x slower) or 'hog+cnn' (the CNN
  # where HOG finds none, and on weak HOG boxes: HOG alone misses ~25% of FairFace,
  # unevenly across groups). See docs/photos.md.
  detector: str = 'hog+cnn'
  hog_upsample: int = 1  # HOG upsampling passes; 1 finds the small faces of 224px crops
  cnn_upsample: int = 0  # CNN upsampling passes; 0 already finds faces in 224px crops
  detect_max_side: int = 1024  # detect on a copy downscaled to this side (big photos)
  # The CNN fallback first runs on a copy downscaled to this side, and at full size only
  # where that finds no face: same faces on FairFace, ~2.7x less CNN time. 0: full size only.
  cnn_max_side: int = 128
  output_size: int = 256  # side of the aligned square crop written to the TFRecords
  jpeg_quality: int = 95
  # The same treatment for every source (treatment.py), applied after alignment:
  # keep the central fraction of the aligned square (1.0: all of it; 0.5 drops the
  # padding loose crops such as FairFace's need), reduce every crop to
  # `resample_size` px and back (0: off), one shared JPEG generation (0: off).
  crop_fraction: float = 1.0
  resample_size: int = 0
  shared_jpeg_quality: int = 0
  # Keep the crop's own pixels (side crop_fraction x output_size) instead of resizing it
  # back to output_size: the model then sees no upsampled region (treatment.py).
  native_crop: bool = False
  # Store dlib's 128-d face descriptor of each aligned face, taken before the
  # treatment above, for the DemographicAnnotator (~113 CPU-ms per face, in the Beam
  # workers). Needed when a crop cuts into the face: at crop_fraction 0.5 the
  # annotator's descriptor box would reach outside the stored image.
  face_descriptors: bool = False
  max_image_pixels: int = 64_000_000  # decompression-bomb guard, checked before decoding
  limit_per_source: int = 0  # >0: ingest only this many inputs per source (smoke runs)
  progress_interval_seconds: float = 60.0  # how often each worker logs its progress
  # Fraction of inputs that may end as no-face/unreadable/filtered before the run fails.
  max_failure_rate: float = 0.5
  # Deterministic hash split for sources without their own split.
  eval_fraction: float = 0.1
  test_fraction: float = 0.1
