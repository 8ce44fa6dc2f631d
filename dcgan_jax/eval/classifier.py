"""A small CNN classifier for labelled 28x28 datasets: the feature network of FID, coverage and precision/recall.

Inception features do not fit MNIST-like data (and their weights must be downloaded), so each dataset gets its own
classifier, trained here in ~30 s on 2 CPU cores and cached. Its penultimate layer (`FEATURE_DIM` units) gives
the features; its predictions give the class histograms of mode coverage.

* `train_classifier(images, labels, ...)` trains it and reports the accuracy on held-out images.
* `predict_and_features(variables, images)` runs it, jit-compiled, in fixed-size batches: the predicted classes
  and the features from one pass.
* `load_or_train(dataset_key, images, labels, cache_dir)` keeps the trained parameters in
  `cache_dir/classifier_<dataset_key>.msgpack`, so later runs load them.
* `load_labels(data_config)` reads the labels that go with `input_pipeline.load_images(data_config)`: IDX label
  files (`*-labels-idx1-ubyte[.gz]`) next to the images, or TFDS's 'label' feature.

Command line (prints the held-out accuracy and writes the cache):
  python -m dcgan_jax.cli.classifier --data_source=idx --data_path=DIR --split=test --out=DIR
"""

import functools
import os
import re
import time
from typing import Any, Optional

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dcgan_jax import errors
from dcgan_jax.data import input_pipeline

FEATURE_DIM = 128
# Bumped whenever the architecture or the input scaling changes, so that stale cached parameters are retrained.
_VERSION = 1
# Images per call of the compiled feature/predict function; inputs are padded to a multiple of it.
_EVAL_BATCH = 500

PyTree = Any


class CNN(nn.Module):
  """images float32 [B, 28, 28, 1] in [-1, 1] -> (logits [B, num_classes], features [B, FEATURE_DIM]).

  A 5x5 and a 3x3 stride-2 conv (32 and 64 channels, ReLU; 28 -> 14 -> 7), a Dense layer of `FEATURE_DIM` (the
  features, after ReLU), and the Dense classification layer. Strided convs rather than max-pooling: XLA:CPU's
  max-pool gradient made training ~7x slower for no accuracy gained on MNIST.
  """
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = nn.relu(nn.Conv(32, (5, 5), strides=(2, 2))(x))
    x = nn.relu(nn.Conv(64, (3, 3), strides=(2, 2))(x))
    x = x.reshape(x.shape[0], -1)
    feats = nn.relu(nn.Dense(FEATURE_DIM)(x))
    return nn.Dense(self.num_classes)(feats), feats


def _to_unit_range(images: Any, data_range: tuple[float, float]) -> jax.Array:
  """uint8 pixels, or floats in `data_range`, -> float32 in [-1, 1] (the classifier's input range)."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return input_pipeline.to_float(images, (-1.0, 1.0))
  lo, hi = data_range
  return (images.astype(jnp.float32) - lo) * (2.0 / (hi - lo)) - 1.0


def check_images(images: Any) -> None:
  """Raises `errors.DataError` unless `images` has the shape [N, 28, 28, 1] the classifier takes."""
  shape = tuple(np.shape(images))
  if len(shape) != 4 or shape[1:3] != (28, 28) or shape[3] != 1:
    raise errors.DataError(f'the classifier takes 28x28 grayscale images [N, 28, 28, 1], got shape {shape}; '
                           'use an MNIST-like dataset')


def num_classes_of(variables: PyTree) -> int:
  """The number of classes of a trained classifier's `variables`."""
  return int(variables['params']['Dense_1']['bias'].shape[0])


@functools.lru_cache(maxsize=None)
def _apply_fn(num_classes: int):
  model = CNN(num_classes)

  @jax.jit
  def apply(variables, images):
    logits, feats = model.apply(variables, images)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), feats

  return apply


def predict_and_features(variables: PyTree, images: Any,
                         data_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
  """Predicted classes and penultimate-layer features from one pass over `images`, in fixed-size batches (one
  compilation).

  Args:
    variables: the classifier's `{'params': ...}`.
    images: uint8 [N, 28, 28, 1] (0..255), or float [N, 28, 28, 1] in `data_range`.
    data_range: the range of float images ((-1, 1) for tanh generators, (0, 1) for sigmoid); ignored for uint8.

  Returns:
    (predicted classes int32 [N] in [0, num_classes), features float32 [N, FEATURE_DIM], >= 0 (after ReLU)).
  """
  check_images(images)
  apply = _apply_fn(num_classes_of(variables))
  n = images.shape[0]
  labels, feats = [], []
  for start in range(0, n, _EVAL_BATCH):
    batch = _to_unit_range(images[start:start + _EVAL_BATCH], data_range)
    size = batch.shape[0]
    if size < _EVAL_BATCH:
      batch = jnp.pad(batch, ((0, _EVAL_BATCH - size), (0, 0), (0, 0), (0, 0)))
    batch_labels, batch_feats = apply(variables, batch)
    labels.append(batch_labels[:size])
    feats.append(batch_feats[:size])
  if not labels:
    return np.zeros((0,), np.int32), np.zeros((0, FEATURE_DIM), np.float32)
  return np.asarray(jnp.concatenate(labels)), np.asarray(jnp.concatenate(feats))


def accuracy(variables: PyTree, images: np.ndarray, labels: np.ndarray) -> float:
  """Share of uint8 `images` [N, 28, 28, 1] whose predicted class equals `labels` int [N]; a float in [0, 1]."""
  return float(np.mean(predict_and_features(variables, images)[0] == np.asarray(labels)))


def _random_shift(images: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
  """Moves each image [B, H, W, C] by its own random offset of up to `max_shift` pixels, filling with -1 (black)."""
  _, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), constant_values=-1.0)
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * max_shift + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)


@functools.lru_cache(maxsize=None)
def _train_step_fn(num_classes: int, tx: optax.GradientTransformation, max_shift: int):
  model = CNN(num_classes)

  @jax.jit
  def step(params, opt_state, images, labels, key):
    x = input_pipeline.to_float(images, (-1.0, 1.0))
    if max_shift:
      x = _random_shift(x, key, max_shift)

    def loss_fn(params):
      logits, _ = model.apply({'params': params}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def _check_labelled(images: np.ndarray, labels: np.ndarray) -> None:
  check_images(images)
  if np.asarray(images).dtype != np.uint8:
    raise errors.DataError(f'training images must be uint8 pixels, got {np.asarray(images).dtype}')
  if np.shape(labels) != (images.shape[0],):
    raise errors.DataError(f'{images.shape[0]} images but labels of shape {np.shape(labels)}; give one label per '
                           'image')


def train_classifier(images: np.ndarray, labels: np.ndarray, *, seed: int = 0, steps: int = 1500,
                     batch_size: int = 128, learning_rate: float = 2e-3, holdout: float = 0.2,
                     eval_images: Optional[np.ndarray] = None, eval_labels: Optional[np.ndarray] = None,
                     num_classes: Optional[int] = None, max_shift: int = 1) -> tuple[PyTree, float, list[float]]:
  """Trains the CNN with Adam (cosine-decayed learning rate) on softmax cross-entropy.

  Each training image is moved by a random offset of up to `max_shift` pixels per step, which regularizes small
  training sets (8,000 MNIST digits) at no cost.

  Args:
    images: uint8 [N, 28, 28, 1], values 0..255.
    labels: int [N], values in [0, num_classes).
    seed: seeds the split, the initialization and the batch order.
    steps: training steps (1500 x 128 images: ~24 epochs of 8,000 images, ~3 of 60,000; ~30 s on 2 CPU cores).
    batch_size: images per step (the last partial batch of each epoch is dropped).
    learning_rate: Adam's peak learning rate.
    holdout: share of `images` held out for the accuracy, when no `eval_images` are given.
    eval_images, eval_labels: a separate evaluation set (e.g. the test split); then all `images` train.
    num_classes: classes K; default max(labels) + 1.
    max_shift: largest random translation in pixels (0: none).

  Returns:
    `(variables, held_out_accuracy, losses)`: `{'params': ...}`, the accuracy in [0, 1] on the held-out (or eval)
    images (NaN if there are none), and the mean training loss of each epoch (the last one possibly partial).
  """
  labels = np.asarray(labels).astype(np.int32)
  _check_labelled(images, labels)
  num_classes = int(num_classes or labels.max() + 1)
  rng = np.random.default_rng(seed)
  if eval_images is None:
    order = rng.permutation(images.shape[0])
    num_eval = int(round(holdout * images.shape[0]))
    eval_idx, train_idx = order[:num_eval], order[num_eval:]
    eval_images, eval_labels = images[eval_idx], labels[eval_idx]
    images, labels = images[train_idx], labels[train_idx]
  else:
    _check_labelled(eval_images, eval_labels)
  if images.shape[0] < batch_size:
    raise errors.DataError(f'{images.shape[0]} training images, fewer than the batch size {batch_size}; use more '
                           'data or a smaller batch')

  steps_per_epoch = images.shape[0] // batch_size
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1)))
  params = jax.jit(CNN(num_classes).init)(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))['params']
  opt_state = tx.init(params)
  step_fn = _train_step_fn(num_classes, tx, max_shift)
  shift_key = jax.random.fold_in(jax.random.key(seed), 1)

  losses = []
  step = 0
  start = time.time()
  for epoch in range(-(-steps // steps_per_epoch)):
    order = rng.permutation(images.shape[0])
    epoch_losses = []
    for i in range(steps_per_epoch):
      if step >= steps:
        break
      idx = order[i * batch_size:(i + 1) * batch_size]
      params, opt_state, loss = step_fn(params, opt_state, images[idx], labels[idx],
                                        jax.random.fold_in(shift_key, step))
      epoch_losses.append(loss)
      step += 1
    if epoch_losses:
      losses.append(float(np.mean(jax.device_get(epoch_losses))))
      logging.info('classifier epoch %d: loss %.4f (%.0f s)', epoch + 1, losses[-1], time.time() - start)
  variables = {'params': params}
  held_out = accuracy(variables, eval_images, eval_labels) if len(eval_labels) else float('nan')
  return variables, held_out, losses


def cache_path(cache_dir: str, dataset_key: str) -> str:
  safe = re.sub(r'[^A-Za-z0-9._-]+', '_', dataset_key).strip('_') or 'dataset'
  return os.path.join(cache_dir, f'classifier_{safe}.msgpack')


def save(path: str, variables: PyTree, held_out_accuracy: float) -> None:
  """Writes `variables` and their accuracy to `path` (msgpack), atomically: a crash leaves no partial file."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  payload = {'version': _VERSION, 'accuracy': float(held_out_accuracy), 'variables': jax.device_get(variables)}
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(payload))
  os.replace(tmp, path)


def load(path: str) -> Optional[tuple[PyTree, float]]:
  """`(variables, accuracy)` from a file written by `save`, or None if it is absent, unreadable or stale."""
  try:
    with open(path, 'rb') as f:
      payload = flax.serialization.msgpack_restore(f.read())
  except FileNotFoundError:
    return None
  except Exception as e:  # pylint: disable=broad-except
    # A cache that cannot be read is retrained, not fatal.
    logging.warning('ignoring unreadable classifier cache %s (%s: %s)', path, type(e).__name__, e)
    return None
  if not isinstance(payload, dict) or payload.get('version') != _VERSION or not _has_cnn_shapes(
      payload.get('variables')):
    logging.warning('ignoring classifier cache %s: written by another version of the classifier', path)
    return None
  return payload['variables'], float(payload['accuracy'])


def _has_cnn_shapes(variables: Any) -> bool:
  """Whether `variables` fit the current `CNN` (guards against a cache written for another architecture)."""
  try:
    num_classes = num_classes_of(variables)
    wanted = jax.eval_shape(CNN(num_classes).init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    return jax.tree.structure(wanted) == jax.tree.structure(variables) and all(
        w.shape == np.shape(v) for w, v in zip(jax.tree.leaves(wanted), jax.tree.leaves(variables)))
  except (KeyError, TypeError, AttributeError):
    return False


def load_or_train(dataset_key: str, images: np.ndarray, labels: np.ndarray, cache_dir: str,
                  **train_kwargs: Any) -> PyTree:
  """The cached classifier of `dataset_key`, or a newly trained one that is then cached.

  Args:
    dataset_key: names the dataset (e.g. `dataset_key(config.data)`); one cache file per key.
    images: uint8 [N, 28, 28, 1] to train on when nothing is cached.
    labels: int [N].
    cache_dir: directory of the cache files (created if needed).
    **train_kwargs: passed to `train_classifier` (seed, steps, ...).

  Returns:
    The classifier's variables `{'params': ...}`.
  """
  path = cache_path(cache_dir, dataset_key)
  cached = load(path)
  if cached is not None:
    logging.info('Loaded the %s classifier from %s (held-out accuracy %.4f)', dataset_key, path, cached[1])
    return cached[0]
  logging.info('Training the %s classifier on %d images (cached in %s)', dataset_key, images.shape[0], path)
  variables, held_out, _ = train_classifier(images, labels, **train_kwargs)
  logging.info('The %s classifier: held-out accuracy %.4f', dataset_key, held_out)
  save(path, variables, held_out)
  return variables


def dataset_key(data_config: ml_collections.ConfigDict) -> str:
  """A cache key naming the dataset of `config.data`: `tfds_<name>`, `bundled_<name>` or `idx_<directory name>`
  (split-independent)."""
  if data_config.source == 'bundled':
    return 'bundled_' + str(data_config.name)
  if data_config.source == 'idx':
    return 'idx_' + os.path.basename(os.path.normpath(os.path.abspath(data_config.path)))
  return 'tfds_' + str(data_config.name)


# The IDX label readers live with the data pipeline (class-conditional training reads labels too).
read_idx_labels = input_pipeline.read_idx_labels


def load_labels(data_config: ml_collections.ConfigDict) -> np.ndarray:
  """The labels of the split that `input_pipeline.load_images(data_config)` reads, in the same order.

  Args:
    data_config: `config.data` (`source`, `name`, `split`, `path`, `data_dir`).

  Returns:
    int32 [N].

  Raises:
    errors.DataError: no labels file beside the IDX images, a TFDS dataset without a 'label' feature, or a source
      without labels.
  """
  if data_config.source in ('idx', 'bundled'):
    return read_idx_labels(input_pipeline.label_file_for(input_pipeline.idx_images_file(data_config)))
  if data_config.source != 'tfds':
    raise errors.DataError(f'--config.data.source={data_config.source!r} has no labels; the classifier metrics '
                           'need a labelled dataset from the tfds, bundled or idx source')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name, split = data_config.name, data_config.split
  # The images were loaded (or refused) by input_pipeline first, so the data is prepared: never download here.
  ds = tfds.load(name, split=split, data_dir=data_config.get('data_dir') or None, download=False,
                 shuffle_files=False)
  if not isinstance(ds.element_spec, dict) or 'label' not in ds.element_spec:
    raise errors.DataError(f'TFDS dataset {name!r} has no "label" feature; the classifier metrics need a labelled '
                           'dataset')
  labels = input_pipeline.read_tfds_feature(ds, 'label')
  return labels.astype(np.int32) if labels is not None else np.zeros((0,), np.int32)


