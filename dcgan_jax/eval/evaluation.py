"""Sample-quality evaluation during training: FID, mode coverage, precision/recall and pixel statistics.

`Evaluator` does the expensive part once, at the start of a run: the classifier's features, Gaussian statistics,
class histogram and k-NN radii of the real images. Each `evaluate(generated)` then costs one classifier pass over
the generated images plus a few small matrix operations (~1 s for 2,000 MNIST samples on 2 CPU cores).

Typical use (see `build_evaluator` for the classifier's caching):

  evaluator = evaluation.build_evaluator(config, images, cache_dir)      # once
  scores = evaluator.evaluate(np.asarray(train.generate(state, z)))   # every evaluation
"""

import math
import os
from typing import Any, Optional

from absl import logging
import ml_collections
import numpy as np

from dcgan_jax.eval import classifier
from dcgan_jax import errors
from dcgan_jax.data import input_pipeline
from dcgan_jax.eval import metrics
from dcgan_jax import models

PyTree = Any

# The keys of `Evaluator.evaluate`'s result, in a stable order (for logs and tables); `CONDITIONAL_KEYS` follow
# when the generated images' requested classes are given (class-conditional runs).
KEYS = ('fid', 'coverage', 'kl', 'precision', 'recall', 'gen_mean', 'gen_std', 'real_mean', 'real_std')
CONDITIONAL_KEYS = ('class_accuracy', 'class_accuracy_min')


class Evaluator:
  """Compares generated images with a fixed set of real images through a classifier's features and predictions.

  Metrics (all floats):
    fid: Fréchet distance between the Gaussian statistics of the classifier features of generated and real images.
    coverage: number of classes the classifier assigns at least 1% of the generated images to (out of num_classes).
    kl: KL(generated class frequencies || real class frequencies), in nats (`metrics.kl_to_reference`).
    precision, recall: improved precision and recall (k-NN manifolds, k=3) in feature space, in [0, 1]. Both use
      min(M, N) points of each set, because the k-NN radii depend on the number of points.
    gen_mean, gen_std, real_mean, real_std: pixel mean and standard deviation, in `data_range`.
    class_accuracy (only when `evaluate` gets the requested classes): the fraction of generated images, asked for
      class k, that the classifier recognises as k, in [0, 1].
    class_accuracy_min (with class_accuracy): the lowest of those fractions over the classes asked for (the worst
      class's `per_class_accuracy`), in [0, 1].
  """

  def __init__(self, classifier_variables: PyTree, real_images: np.ndarray, real_labels: Optional[np.ndarray],
               num_classes: Optional[int] = None, data_range: tuple[float, float] = (-1.0, 1.0), *,
               max_real: int = 10000, k: int = 3, seed: int = 0):
    """Precomputes everything about the real images.

    Args:
      classifier_variables: the trained classifier's `{'params': ...}` (`classifier.load_or_train`).
      real_images: uint8 [N, 28, 28, 1], 0..255.
      real_labels: int [N] true classes, or None to use the classifier's predictions as the real histogram.
      num_classes: K; default the classifier's number of outputs.
      data_range: the range of the generated images passed to `evaluate` ((-1, 1) for tanh generators).
      max_real: use at most this many real images (a fixed random subset when N is larger).
      k: the neighbour that sets the precision/recall radii.
      seed: picks the subset.
    """
    real_images = np.asarray(real_images)
    if real_images.dtype != np.uint8:
      raise TypeError(f'real_images must be uint8 pixels, got {real_images.dtype}')
    self.variables = classifier_variables
    self.num_classes = int(num_classes or classifier.num_classes_of(classifier_variables))
    self.data_range = (float(data_range[0]), float(data_range[1]))
    self.k = int(k)
    keep = np.arange(real_images.shape[0])
    if real_images.shape[0] > max_real:
      keep = np.sort(np.random.default_rng(seed).choice(real_images.shape[0], max_real, replace=False))
    # Shuffled once, so that any prefix (used for precision/recall) is a random subset of the real images.
    keep = np.random.default_rng(seed).permutation(keep)
    images = real_images[keep]
    predicted, self.real_features = classifier.predict_and_features(classifier_variables, images)
    self.real_mu, self.real_sigma = metrics.gaussian_stats(self.real_features)
    labels = predicted if real_labels is None else np.asarray(real_labels)[keep]
    self.real_hist = metrics.class_histogram(labels, self.num_classes)
    self.real_pixels = metrics.pixel_stats(input_pipeline.to_float(images, self.data_range))
    self._real_radii: dict[int, np.ndarray] = {}

  @property
  def num_real(self) -> int:
    return int(self.real_features.shape[0])

  def _radii(self, n: int) -> np.ndarray:
    # The radii of the first n real points, computed once per n (the trainer always evaluates the same M).
    if n not in self._real_radii:
      self._real_radii[n] = metrics.knn_radii(self.real_features[:n], self.k)
    return self._real_radii[n]

  def evaluate(self, generated: Any, labels: Optional[Any] = None) -> dict[str, float]:
    """Scores generated images against the real ones.

    Args:
      generated: float32 [M, 28, 28, 1] in `data_range`, M > k (2,000 or more gives stable FIDs).
      labels: optional int [M], the class each image was generated for (class-conditional generators): adds
        `class_accuracy`.

    Returns:
      `{key: float}` for every key of `KEYS` (and `CONDITIONAL_KEYS` with `labels`). If any generated value is NaN
      or Inf, every generated-side metric is NaN (the real-side ones are still given).
    """
    keys = KEYS + (CONDITIONAL_KEYS if labels is not None else ())
    generated = np.asarray(generated, np.float32)
    if generated.ndim != 4 or generated.shape[0] <= self.k:
      raise ValueError(f'generated must be [M, H, W, C] with M > {self.k}, got shape {generated.shape}')
    result = {'real_mean': self.real_pixels['mean'], 'real_std': self.real_pixels['std']}
    if not np.all(np.isfinite(generated)):
      logging.warning('generated images hold NaN or Inf; their metrics are NaN')
      return {key: result.get(key, math.nan) for key in keys}
    predicted, feats = classifier.predict_and_features(self.variables, generated, self.data_range)
    hist = metrics.class_histogram(predicted, self.num_classes)
    n = min(self.num_real, feats.shape[0])
    precision = metrics.manifold_fraction(feats[:n], self.real_features[:n], self._radii(n))
    recall = metrics.manifold_fraction(self.real_features[:n], feats[:n], metrics.knn_radii(feats[:n], self.k))
    pixels = metrics.pixel_stats(generated)
    result.update({
        'fid': metrics.frechet_distance(*metrics.gaussian_stats(feats), self.real_mu, self.real_sigma),
        'coverage': float(metrics.coverage(hist)),
        'kl': metrics.kl_to_reference(hist, self.real_hist),
        'precision': precision,
        'recall': recall,
        'gen_mean': pixels['mean'],
        'gen_std': pixels['std'],
    })
    if labels is not None:
      result['class_accuracy'] = class_accuracy(predicted, labels)
      result['class_accuracy_min'] = min(per_class_accuracy(predicted, labels).values())
    return {key: result[key] for key in keys}


def class_accuracy(predicted: Any, requested: Any) -> float:
  """The fraction of generated images whose predicted class is the one they were generated for.

  Args:
    predicted: int [M], the classifier's classes of the generated images.
    requested: int [M], the classes asked of the generator.

  Returns:
    A float in [0, 1].
  """
  predicted, requested = np.asarray(predicted), np.asarray(requested)
  if predicted.shape != requested.shape:
    raise ValueError(f'{predicted.shape[0]} predictions for {requested.shape} requested labels')
  return float(np.mean(predicted == requested))


def per_class_accuracy(predicted: Any, requested: Any) -> dict[int, float]:
  """For each class asked for at least once, the fraction of its images whose predicted class is that class.

  Args:
    predicted: int [M], the classifier's classes of the generated images.
    requested: int [M], the classes asked of the generator.

  Returns:
    `{k: accuracy in [0, 1]}`, the classes in ascending order.
  """
  predicted, requested = np.asarray(predicted), np.asarray(requested)
  if predicted.shape != requested.shape:
    raise ValueError(f'{predicted.shape[0]} predictions for {requested.shape} requested labels')
  return {int(k): float(np.mean(predicted[requested == k] == k)) for k in np.unique(requested)}


def build_evaluator(config: ml_collections.ConfigDict, images: np.ndarray, cache_dir: str,
                    **evaluator_kwargs: Any) -> Evaluator:
  """An `Evaluator` for a training run: labels read, classifier loaded from `cache_dir` or trained and cached.

  Args:
    config: the run's config (`config.data` names the dataset, `config.model.generator.output_activation` the range).
    images: uint8 [N, 28, 28, 1], the run's training images (`input_pipeline.load_images(config.data)`).
    cache_dir: where classifiers are cached, one file per dataset (e.g. `~/.cache/dcgan_jax`).
    **evaluator_kwargs: passed to `Evaluator` (max_real, k, seed).

  Raises:
    errors.DataError: the dataset has no labels (no IDX labels file, no TFDS 'label' feature), or images that are
      not 28x28x1.
  """
  classifier.check_images(images)
  labels = classifier.load_labels(config.data)
  if labels.shape[0] != images.shape[0]:
    raise errors.DataError(f'{images.shape[0]} images but {labels.shape[0]} labels for dataset '
                           f'{classifier.dataset_key(config.data)}; the labels file must match the images file')
  variables = classifier.load_or_train(classifier.dataset_key(config.data), images, labels,
                                       os.path.expanduser(cache_dir),
                                       steps=config.get('eval_classifier_steps', 1500))
  return Evaluator(variables, images, labels, classifier.num_classes_of(variables), models.data_range(config),
                   **evaluator_kwargs)
