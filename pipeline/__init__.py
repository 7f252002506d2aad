"""The fakefaces TFX pipeline: configuration, assembly, runners and CLI."""
import os

# TFX 1.16 / TFMA 0.47 / TFT need Keras 2 (tf_keras). This must be set before
# TensorFlow is first imported anywhere in the process.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
