"""`train.precision` values, free of TensorFlow so the configuration checks them at load time.

precision.py says what each means and what 'auto' picks.
"""

PRECISIONS = ('auto', 'float32', 'mixed_bfloat16', 'mixed_float16')
