"""Metrics on hand-made inputs with known answers: the Fréchet distance against scipy's matrix square root, class
histograms, coverage and KL, k-NN precision and recall, pixel statistics."""

import math

import numpy as np
import pytest
import scipy.linalg

from dcgan_jax.eval import metrics


def _scipy_frechet(mu1, s1, mu2, s2):
  """The textbook formula with scipy's general matrix square root (float64), as a reference."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean).real)


@pytest.mark.parametrize('dim', [3, 32])
def test_frechet_distance_matches_scipy_reference(dim):
  rng = np.random.default_rng(dim)
  a = rng.normal(size=(4 * dim, dim))
  b = rng.normal(size=(5 * dim, dim)) @ rng.normal(size=(dim, dim)) * 0.5 + 0.3
  mu1, s1 = metrics.gaussian_stats(a)
  mu2, s2 = metrics.gaussian_stats(b)
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)
  assert metrics.fid(a, b) == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_distance_of_one_dimensional_gaussians():
  # N(0, 1) vs N(3, 4): 3^2 + 1 + 4 - 2 * sqrt(1 * 4) = 10.
  assert metrics.frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(10.0, abs=1e-12)


def test_gaussian_stats_of_a_square():
  mu, sigma = metrics.gaussian_stats([[0, 0], [2, 0], [0, 2], [2, 2]])
  np.testing.assert_allclose(mu, [1.0, 1.0])
  # Each coordinate: squared deviations 1, 1, 1, 1 over N - 1 = 3; the coordinates are uncorrelated.
  np.testing.assert_allclose(sigma, [[4 / 3, 0.0], [0.0, 4 / 3]], atol=1e-15)
  assert mu.dtype == sigma.dtype == np.float64


def test_fid_is_zero_for_a_set_with_itself_and_grows_with_a_shift():
  x = np.random.default_rng(0).normal(size=(500, 16))
  assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-9)
  # A shift moves the mean only: FID = |shift|^2 = 16 * s^2.
  assert metrics.fid(x, x + 1.0) == pytest.approx(16.0, rel=1e-9)
  assert metrics.fid(x, x + 2.0) == pytest.approx(64.0, rel=1e-9)


def test_frechet_distance_handles_singular_covariances():
  # Fewer samples than dimensions: both covariances are singular; the distance stays finite and >= 0.
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20)) + 1.0
  assert math.isfinite(metrics.fid(a, b)) and metrics.fid(a, b) > 0
  assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-9)


def _direct_mmd2(x, y):
  """MMD^2 with k(a, b) = (a.b / D + 1)^3 from explicit sums over the pairs, in float64."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, d = x.shape

  def k(a, b):
    return (np.dot(a, b) / d + 1.0) ** 3

  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2 * xy


def test_mmd2_unbiased_of_a_hand_computed_case():
  # k(x_i, x_j) off the diagonal: (0*1 + 1)^3 = 1; for y: (2*3 + 1)^3 = 343; across: 1, 1, 27, 64 -> mean 23.25.
  assert metrics.mmd2_unbiased([[0.0], [1.0]], [[2.0], [3.0]]) == 297.5
  assert metrics.kid([[0.0], [1.0]], [[2.0], [3.0]], num_subsets=3) == (297.5, 0.0, 0.0)


def test_kid_matches_a_direct_computation_over_the_same_subsets():
  rng = np.random.default_rng(3)
  a = rng.random((40, 6)).astype(np.float32)
  b = (rng.random((30, 6)) + 0.2).astype(np.float32)
  result = metrics.kid(a, b, num_subsets=5, subset_size=12, seed=7)
  draws = np.random.RandomState(7)
  values = []
  for _ in range(5):
    x = a[draws.choice(40, 12, replace=False)]
    values.append(_direct_mmd2(x, b[draws.choice(30, 12, replace=False)]))
  assert result.mean == pytest.approx(np.mean(values), rel=1e-5)
  assert result.std == pytest.approx(np.std(values), rel=1e-4)
  assert result.stderr == pytest.approx(np.std(values, ddof=1) / math.sqrt(5), rel=1e-4)
  assert result.mean > 0


def test_kid_subset_size_is_capped_by_the_smaller_set_and_near_zero_for_one_distribution():
  rng = np.random.default_rng(4)
  a, b = rng.normal(size=(50, 8)), rng.normal(size=(60, 8))
  # Subsets of 50 = all of a (in another order), so the estimate only varies through b's draws.
  same = metrics.kid(a, b, num_subsets=20, subset_size=1000)
  shifted = metrics.kid(a, b + 1.0, num_subsets=20, subset_size=1000)
  assert abs(same.mean) < 3 * same.std + 0.05
  assert shifted.mean > 10 * abs(same.mean)


def test_kid_rejects_mismatched_features():
  with pytest.raises(ValueError, match='same D'):
    metrics.kid(np.zeros((5, 3)), np.zeros((5, 4)))


def test_gaussian_stats_needs_two_samples():
  with pytest.raises(ValueError, match='N >= 2'):
    metrics.gaussian_stats(np.zeros((1, 4)))


def test_class_histogram_counts_every_class():
  np.testing.assert_array_equal(metrics.class_histogram([0, 2, 2, 1, 2], 4), [1, 1, 3, 0])
  with pytest.raises(ValueError, match=r'\[0, 3\)'):
    metrics.class_histogram([0, 3], 3)


def test_coverage_counts_classes_with_at_least_the_fraction():
  assert metrics.coverage([50, 49, 1, 0]) == 3  # 1 of 100 is exactly 1%: covered.
  assert metrics.coverage([50, 49, 1, 0], min_fraction=0.02) == 2
  assert metrics.coverage([100, 0, 0]) == 1
  assert metrics.coverage([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]) == 10


def test_kl_to_reference_values_and_direction():
  assert metrics.kl_to_reference([5, 5], [1, 1]) == pytest.approx(0.0, abs=1e-12)
  # p = (1/2, 1/2), q = (1/4, 3/4): 1/2 log 2 + 1/2 log(2/3) = 1/2 log(4/3).
  assert metrics.kl_to_reference([1, 1], [1, 3]) == pytest.approx(0.5 * math.log(4 / 3), abs=1e-5)
  # KL(generated || real): a generator producing one of two equally common classes costs log 2 ...
  assert metrics.kl_to_reference([10, 0], [1, 1]) == pytest.approx(math.log(2), abs=1e-5)
  # ... while the reverse direction (mass where the reference has none) is large but finite through epsilon.
  reverse = metrics.kl_to_reference([1, 1], [10, 0])
  assert 6.0 < reverse < 8.0 and reverse == pytest.approx(0.5 * math.log(0.5 / 1e-6) + 0.5 * math.log(0.5), abs=1e-4)


def test_knn_radii_on_a_line():
  points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
  np.testing.assert_array_equal(metrics.knn_radii(points, k=1), [1, 1, 2, 3, 4])
  np.testing.assert_array_equal(metrics.knn_radii(points, k=2), [3, 2, 3, 4, 7])
  # A duplicate is a neighbour at distance 0.
  np.testing.assert_array_equal(metrics.knn_radii(np.array([[0.0], [0.0], [5.0]]), k=1), [0, 0, 5])


def _grid(offset):
  ij = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), axis=-1).reshape(-1, 2)
  return ij + offset


def test_precision_recall_on_toy_clouds():
  real = np.concatenate([_grid(0.0), _grid(100.0)])  # Two far-apart 10x10 grids of spacing 1.
  assert metrics.precision_recall(real, real) == (1.0, 1.0)
  assert metrics.precision_recall(real, real + 1000.0) == (0.0, 0.0)
  # Points 0.14 from the first grid only: all look real (precision 1), half the real ones are produced (recall 1/2).
  assert metrics.precision_recall(real, _grid(0.1)) == (1.0, 0.5)


def test_manifold_fraction_matches_brute_force_over_several_blocks():
  rng = np.random.default_rng(2)
  reference, queries = rng.normal(size=(300, 3)), rng.normal(size=(1100, 3)) * 1.5  # 1100 > 2 blocks of queries.
  radii = metrics.knn_radii(reference)
  distances = np.linalg.norm(queries[:, None] - reference[None], axis=-1)
  expected = np.mean(np.any(distances <= radii[None], axis=1))
  assert metrics.manifold_fraction(queries, reference, radii) == pytest.approx(expected, abs=1.5 / 1100)
  brute_radii = np.sort(np.linalg.norm(reference[:, None] - reference[None], axis=-1), axis=1)[:, 3]
  np.testing.assert_allclose(radii, brute_radii, rtol=1e-5)


def test_pixel_stats():
  assert metrics.pixel_stats(np.array([[-1.0, 1.0], [-1.0, 1.0]])) == {'mean': 0.0, 'std': 1.0}
