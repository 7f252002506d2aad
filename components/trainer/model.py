"""The CNNs of "Fighting Fakes Fairly", built with tf_keras (Keras 2).

`vgg10` is the paper's best model: 8 convolutions in four VGG blocks of two
(32, 32 | 64, 64 | 128, 128 | 128, 128), each block followed by batch
normalisation and 2x2 max pooling, then two dense layers (128 ReLU, 1 sigmoid).
`baseline` is its 3-convolution reference network.
"""

import tf_keras as keras

VGG10_BLOCKS = ((32, 32), (64, 64), (128, 128), (128, 128))
BASELINE_FILTERS = (32, 64, 128)
ARCHITECTURES = ('vgg10', 'baseline')


def build_model(architecture: str, image_size: int, channels: int, dropout: float = 0.0,
                learning_rate: float = 1e-3, optimizer: str = 'adam') -> keras.Model:
  """Returns a compiled binary classifier whose output is P(fake)."""
  inputs = keras.Input(shape=(image_size, image_size, channels), name='image')
  x = inputs
  if architecture == 'vgg10':
    for i, block in enumerate(VGG10_BLOCKS, start=1):
      for j, filters in enumerate(block, start=1):
        x = keras.layers.Conv2D(filters, 3, padding='same', activation='relu',
                                name=f'block{i}_conv{j}')(x)
      x = keras.layers.BatchNormalization(name=f'block{i}_bn')(x)
      x = keras.layers.MaxPooling2D(2, name=f'block{i}_pool')(x)
  elif architecture == 'baseline':
    for i, filters in enumerate(BASELINE_FILTERS, start=1):
      x = keras.layers.Conv2D(filters, 3, padding='same', activation='relu', name=f'conv{i}')(x)
      x = keras.layers.MaxPooling2D(2, name=f'pool{i}')(x)
  else:
    raise ValueError(f'architecture must be one of {ARCHITECTURES}, got {architecture!r}')
  x = keras.layers.Flatten(name='flatten')(x)
  x = keras.layers.Dense(128, activation='relu', name='dense')(x)
  if dropout:
    x = keras.layers.Dropout(dropout, name='dropout')(x)
  # float32 output even under mixed precision, so probabilities stay exact.
  outputs = keras.layers.Dense(1, activation='sigmoid', dtype='float32', name='fake_probability')(x)
  model = keras.Model(inputs, outputs, name=architecture)
  optimizers = {'adam': keras.optimizers.Adam, 'sgd': keras.optimizers.SGD,
                'rmsprop': keras.optimizers.RMSprop}
  if optimizer not in optimizers:
    raise ValueError(f'optimizer must be one of {sorted(optimizers)}, got {optimizer!r}')
  model.compile(optimizer=optimizers[optimizer](learning_rate=learning_rate),
                loss='binary_crossentropy',
                metrics=[keras.metrics.BinaryAccuracy(name='accuracy'),
                         keras.metrics.AUC(name='auc')])
  return model
