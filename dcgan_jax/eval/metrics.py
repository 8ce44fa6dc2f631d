"""Sample-quality metrics for GANs, computed on features of a fixed network (see `classifier.py`).

* Fréchet distance (FID when the features come from a classifier): `gaussian_stats`, `frechet_distance`, `fid`.
* Kernel distance (KID, Binkowski et al., 2018): `mmd2_unbiased`, `kid` (unbiased MMD^2 with a cubic polynomial
  kernel, averaged over random subsets as torch-fidelity does).
* Mode coverage from a classifier's predicted labels: `class_histogram`, `coverage`, `kl_to_reference`.
* Improved precision and recall (Kynkäänniemi et al., 2019): `knn_radii`, `manifold_fraction`,
  `precision_recall`. Precision is the share of generated samples that look real (fidelity); recall the share of
  real samples the generator can produce (diversity).
* `pixel_stats`: mean and standard deviation of all pixel values, a cheap check of the output range.

Gaussian statistics and the Fréchet distance are float64 NumPy (small D x D matrices, precision matters); the
pairwise distances of precision and recall are batched, jit-compiled JAX (N x M grows quickly).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Rows of queries per block of the pairwise-distance computation: a block of distances is this many times the
# number of reference points, so memory stays bounded (512 x 10,000 float32 is 20 MB) for any number of queries.
_BLOCK_ROWS = 512


def gaussian_stats(features: Any) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance of a feature set, in float64.

  Args:
    features: float array [N, D], N >= 2.

  Returns:
    `(mu, sigma)`: float64 [D] and float64 [D, D] (unbiased covariance, divided by N - 1).
  """
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f'features must be [N, D] with N >= 2, got shape {x.shape}')
  return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric positive semi-definite matrix (float64)."""
  eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
  # Rounding leaves tiny negative eigenvalues on singular covariances (fewer samples than dimensions).
  return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
  """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

  d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

  tr((s1 s2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of s1^(1/2) s2 s1^(1/2), which
  has the same eigenvalues as s1 s2 but is symmetric positive semi-definite: no complex parts and no iterative
  matrix square root, so singular covariances are handled too.

  Args:
    mu1, mu2: float [D] means.
    sigma1, sigma2: float [D, D] covariances (symmetric positive semi-definite).

  Returns:
    The squared distance, a float >= 0 (0 for identical statistics up to rounding).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f'shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, '
                     f'sigma2 {sigma2.shape}')
  root1 = _psd_sqrt(sigma1)
  product = root1 @ sigma2 @ root1
  eigvals = np.linalg.eigvalsh((product + product.T) / 2)
  trace_sqrt = np.sum(np.sqrt(np.clip(eigvals, 0.0, None)))
  diff = mu1 - mu2
  distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
  # Identical inputs can round to a tiny negative number.
  return float(max(distance, 0.0))


def fid(features_a: Any, features_b: Any) -> float:
  """Fréchet distance between the Gaussian statistics of two feature sets, each float [N, D] with N >= 2."""
  return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def mmd2_unbiased(x: Any, y: Any) -> float:
  """Unbiased estimate of MMD^2 between two equally large samples with the kernel k(a, b) = (a.b / D + 1)^3.

  MMD^2 = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j).

  Args:
    x, y: float [m, D] with m >= 2. Dot products in float32 (the features' precision, as torch-fidelity), the
      kernel values and their sums in float64.

  Returns:
    The estimate, a float; it can be slightly negative when the distributions are equal.
  """
  x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
  m, dim = x.shape
  if y.shape != x.shape or m < 2:
    raise ValueError(f'x and y must both be [m, D] with m >= 2, got {x.shape} and {y.shape}')

  def kernel(a, b):
    return (np.asarray(a @ b.T, np.float64) / dim + 1.0) ** 3

  k_xx, k_yy = kernel(x, x), kernel(y, y)
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2.0 * kernel(x, y).mean())


class KID(NamedTuple):
  """KID over subsets: the mean estimate, the standard deviation of the subsets' estimates (what torch-fidelity
  reports) and the standard error of the mean (std with ddof 1 / sqrt(subsets); the subsets overlap when they
  are drawn from fewer than subsets x size samples, so it understates the uncertainty then)."""
  mean: float
  std: float
  stderr: float


def kid(features_a: Any, features_b: Any, num_subsets: int = 100, subset_size: int = 1000, seed: int = 2020) -> KID:
  """Kernel Inception Distance (Binkowski et al., 2018) as torch-fidelity computes it.

  Each of `num_subsets` rounds draws min(subset_size, N_a, N_b) rows without replacement from `features_a`, then
  as many from `features_b` (numpy's RandomState(seed).choice, torch-fidelity's draws with its default seed 2020
  when `features_a` is its input1, the generated set), and takes `mmd2_unbiased` of the two.

  Args:
    features_a, features_b: float [N_a, D] and [N_b, D], N >= 2 each.
    num_subsets: rounds >= 1.
    subset_size: rows per subset (the cap).
    seed: seeds the draws.

  Returns:
    `KID(mean, std, stderr)`, floats.
  """
  a, b = np.asarray(features_a, np.float32), np.asarray(features_b, np.float32)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
    raise ValueError(f'features must be [N, D] with the same D and N >= 2, got {a.shape} and {b.shape}')
  if num_subsets < 1 or subset_size < 2:
    raise ValueError(f'num_subsets={num_subsets} must be >= 1 and subset_size={subset_size} >= 2')
  size = min(subset_size, len(a), len(b))
  rng = np.random.RandomState(seed)  # pylint: disable=no-member  (torch-fidelity's generator, for its draws)
  values = np.empty(num_subsets, np.float64)
  for i in range(num_subsets):
    x = a[rng.choice(len(a), size, replace=False)]
    values[i] = mmd2_unbiased(x, b[rng.choice(len(b), size, replace=False)])
  stderr = float(values.std(ddof=1) / np.sqrt(num_subsets)) if num_subsets > 1 else 0.0
  return KID(float(values.mean()), float(values.std()), stderr)


def class_histogram(predicted_labels: Any, num_classes: int) -> np.ndarray:
  """Counts per class.

  Args:
    predicted_labels: int array [N], values in [0, num_classes).
    num_classes: number of classes K >= 1.

  Returns:
    int64 [K]: how many labels fall in each class; sums to N.
  """
  labels = np.asarray(predicted_labels).reshape(-1)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f'labels must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]')
  return np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.int64)


def coverage(hist: Any, min_fraction: float = 0.01) -> int:
  """Number of classes holding at least `min_fraction` of all samples.

  Args:
    hist: counts (or frequencies) per class, float or int [K], not all zero.
    min_fraction: the share in [0, 1] a class needs to count as covered (1% by default).

  Returns:
    An int in [0, K]; K means every mode is produced at least that often.
  """
  counts = np.asarray(hist, np.float64)
  return int(np.sum(counts / counts.sum() >= min_fraction))


def kl_to_reference(hist: Any, reference_hist: Any, epsilon: float = 1e-6) -> float:
  """KL(generated || reference) between two class histograms, in nats.

  The direction KL(p || q), with p the generated and q the reference (real) class frequencies, weighs each class
  by how often the generator produces it: over-producing a class costs p log(p / q), and a class the generator
  makes but the real data lacks costs the most. A class the generator drops adds nothing directly (dropped modes
  show in `coverage` and in the excess mass on the other classes).

  KL = sum_i p_i log((p_i + epsilon) / (q_i + epsilon)); terms with p_i = 0 are 0, and epsilon keeps q_i = 0 finite.

  Args:
    hist: generated counts (or frequencies) per class, float or int [K], not all zero.
    reference_hist: real counts (or frequencies) per class [K], not all zero.
    epsilon: added to both frequencies inside the logarithm.

  Returns:
    A float >= 0 (up to epsilon's effect); 0 for identical frequencies.
  """
  p, q = np.asarray(hist, np.float64), np.asarray(reference_hist, np.float64)
  if p.shape != q.shape:
    raise ValueError(f'histograms differ in shape: {p.shape} vs {q.shape}')
  p, q = p / p.sum(), q / q.sum()
  terms = np.where(p > 0, p * np.log((p + epsilon) / (q + epsilon)), 0.0)
  return float(np.sum(terms))


def _pad_rows(x: jax.Array, multiple: int) -> tuple[jax.Array, int]:
  n = x.shape[0]
  padded = -(-n // multiple) * multiple
  return jnp.pad(x, ((0, padded - n), (0, 0))), n


def _squared_distances(queries: jax.Array, reference: jax.Array) -> jax.Array:
  """[B, D] x [N, D] -> [B, N] squared Euclidean distances, >= 0."""
  cross = jnp.matmul(queries, reference.T, precision=jax.lax.Precision.HIGHEST)
  d2 = jnp.sum(queries ** 2, axis=1)[:, None] + jnp.sum(reference ** 2, axis=1)[None, :] - 2.0 * cross
  return jnp.maximum(d2, 0.0)


@functools.partial(jax.jit, static_argnames=('k',))
def _knn_radii_blocks(padded: jax.Array, reference: jax.Array, k: int) -> jax.Array:
  blocks = padded.reshape(-1, _BLOCK_ROWS, padded.shape[1])

  columns = jnp.arange(reference.shape[0])

  def one_block(block):
    # Each point is its own nearest neighbour (distance 0), so the k-th other neighbour is the (k+1)-th smallest.
    # Removing the minimum k times and taking the next is ~6x faster on XLA:CPU than lax.top_k, for small k; it
    # removes one entry per pass, so duplicate points still count as separate neighbours.
    d2 = _squared_distances(block, reference)
    for _ in range(k):
      nearest = jnp.argmin(d2, axis=1)
      d2 = jnp.where(columns[None, :] == nearest[:, None], jnp.inf, d2)
    return jnp.sqrt(jnp.min(d2, axis=1))

  return jax.lax.map(one_block, blocks).reshape(-1)


def knn_radii(features: Any, k: int = 3) -> np.ndarray:
  """Distance from each point to its k-th nearest other point of the same set.

  Args:
    features: float [N, D] with N > k.
    k: which neighbour (3 as in Kynkäänniemi et al.).

  Returns:
    float32 [N], >= 0.
  """
  x = jnp.asarray(features, jnp.float32)
  if x.ndim != 2 or x.shape[0] <= k:
    raise ValueError(f'features must be [N, D] with N > k={k}, got shape {x.shape}')
  padded, n = _pad_rows(x, _BLOCK_ROWS)
  return np.asarray(_knn_radii_blocks(padded, x, k))[:n]


@jax.jit
def _inside_blocks(padded: jax.Array, reference: jax.Array, radii: jax.Array) -> jax.Array:
  blocks = padded.reshape(-1, _BLOCK_ROWS, padded.shape[1])

  def one_block(block):
    return jnp.any(_squared_distances(block, reference) <= (radii ** 2)[None, :], axis=1)

  return jax.lax.map(one_block, blocks).reshape(-1)


def manifold_fraction(queries: Any, reference: Any, reference_radii: Any) -> float:
  """Share of `queries` inside the union of balls around `reference` points with `reference_radii`.

  Args:
    queries: float [M, D].
    reference: float [N, D].
    reference_radii: float [N], each point's ball radius (from `knn_radii(reference)`).

  Returns:
    A float in [0, 1].
  """
  q = jnp.asarray(queries, jnp.float32)
  padded, m = _pad_rows(q, _BLOCK_ROWS)
  inside = _inside_blocks(padded, jnp.asarray(reference, jnp.float32), jnp.asarray(reference_radii, jnp.float32))
  return float(np.mean(np.asarray(inside)[:m]))


def precision_recall(real_features: Any, generated_features: Any, k: int = 3) -> tuple[float, float]:
  """Improved precision and recall (Kynkäänniemi et al., 2019) with k-NN radii in feature space.

  The real manifold is the union of balls around each real point whose radius is the distance to its k-th nearest
  real neighbour; likewise the generated manifold.

  Args:
    real_features: float [N, D], N > k.
    generated_features: float [M, D], M > k.
    k: the neighbour that sets the radii.

  Returns:
    `(precision, recall)`, floats in [0, 1]: precision = share of generated points inside the real manifold,
    recall = share of real points inside the generated manifold.
  """
  precision = manifold_fraction(generated_features, real_features, knn_radii(real_features, k))
  recall = manifold_fraction(real_features, generated_features, knn_radii(generated_features, k))
  return precision, recall


def pixel_stats(images: Any) -> dict[str, float]:
  """Mean and standard deviation over every pixel value of `images` (float [N, H, W, C], any range).

  Returns:
    `{'mean': float, 'std': float}` in the images' own range.
  """
  x = np.asarray(images, np.float64)
  return {'mean': float(x.mean()), 'std': float(x.std())}
