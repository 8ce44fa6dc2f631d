"""Pictures: sample grids, GIF animation, training-curve plots, score annotations and real-vs-fake comparisons."""

import numpy as np
from PIL import Image
import pytest

from dcgan_jax import visualize


def _images(n, value_step=0.1):
  """float32 [n, 4, 3, 1] in [-1, 1]: image i is filled with -1 + i * value_step."""
  return np.stack([np.full((4, 3, 1), -1.0 + i * value_step, np.float32) for i in range(n)])


def test_make_grid_layout():
  grid = visualize.make_grid(_images(3, 1.0), columns=2, padding=1)
  # 2 columns x 2 rows of 4x3 tiles with 1-pixel padding; values -1, 0, 1 -> 0, 128, 255.
  assert grid.shape == (2 * 5 + 1, 2 * 4 + 1, 1)
  assert grid[1, 1, 0] == 0 and grid[1, 5, 0] == 128 and grid[6, 1, 0] == 255 and grid[6, 5, 0] == 0


def test_save_gif_keeps_grayscale_frames_exactly(tmp_path):
  frames = [np.full((5, 7), v, np.uint8) for v in (0, 100, 200)]
  frames[1][2, 3] = 7
  path = tmp_path / 'out' / 'train.gif'
  visualize.save_gif(frames, str(path), duration_ms=150)
  with Image.open(path) as gif:
    assert gif.n_frames == 3 and gif.info['duration'] == 150 and gif.info['loop'] == 0
    for i, frame in enumerate(frames):
      gif.seek(i)
      np.testing.assert_array_equal(np.asarray(gif.convert('L')), frame)


def test_save_gif_from_png_paths_and_size_check(tmp_path):
  paths = []
  for i in range(2):
    paths.append(str(tmp_path / f'step_{i}.png'))
    Image.fromarray(np.full((6, 6, 3), 60 * (i + 1), np.uint8)).save(paths[-1])
  visualize.save_gif(paths, str(tmp_path / 'a.gif'))
  with Image.open(tmp_path / 'a.gif') as gif:
    assert gif.n_frames == 2 and gif.size == (6, 6)
  with pytest.raises(ValueError, match='one size'):
    visualize.save_gif([np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8)], str(tmp_path / 'b.gif'))
  with pytest.raises(ValueError, match='at least one frame'):
    visualize.save_gif([], str(tmp_path / 'c.gif'))


def test_plot_history_groups_series_into_panels(tmp_path):
  history = {
      'd_loss': [(0, 1.4), (100, 1.1)], 'g_loss': [(0, 0.7), (100, 1.5)],
      'd_real': [(0, 0.5), (100, 0.7)], 'd_fake': [(0, 0.5), (100, 0.3)],
      'fid': [(0, 300.0), (100, 40.0)], 'recall': [(100, 0.4)], 'precision': [], 'coverage': [(100, 9.0)],
  }
  path = tmp_path / 'plots' / 'history.png'
  titles = visualize.plot_history(history, str(path), title='mnist')
  assert titles == ['Losses', 'Discriminator outputs', 'FID', 'coverage', 'recall']
  with Image.open(path) as image:
    assert image.format == 'PNG' and image.size[1] > image.size[0]  # Five panels stacked.
  with pytest.raises(ValueError, match='at least one series'):
    visualize.plot_history({'fid': []}, str(tmp_path / 'empty.png'))


def test_annotate_scores_keeps_tiles_and_colours_labels():
  # 28 pixels wide, as MNIST: a 4-character label fits under its own tile.
  images = np.stack([np.full((6, 28, 1), v, np.float32) for v in (-1.0, 0.0, 1.0)])
  picture = visualize.annotate_scores(images, [0.9, 0.2, 0.5], columns=3, padding=2, label_height=12)
  # One row of 3 cells: a 6x28 tile over a 12-pixel label band each.
  assert picture.shape == (2 + 6 + 12 + 2, 2 + 3 * (28 + 2), 3) and picture.dtype == np.uint8
  for i, value in enumerate((0, 128, 255)):
    x = 2 + i * 30
    np.testing.assert_array_equal(picture[2:8, x:x + 28], value)
  bands = [picture[8:20, 2 + i * 30:2 + i * 30 + 28].reshape(-1, 3).astype(int) for i in range(3)]
  # 0.9 and 0.5 (D calls them real) in green, 0.2 in red.
  for band, green in zip(bands, (True, False, True)):
    assert band.max() > 100
    assert (band[:, 1].sum() > band[:, 0].sum()) == green
  with pytest.raises(ValueError, match='one score per image'):
    visualize.annotate_scores(images, [0.5])


def test_real_vs_fake_places_both_grids():
  real, fake = _images(4, 0.5), _images(2, 1.0)
  picture = visualize.real_vs_fake(real, fake, gap=5, header=10)
  left, right = visualize.make_grid(real), visualize.make_grid(fake)
  assert picture.shape == (10 + max(left.shape[0], right.shape[0]), left.shape[1] + 5 + right.shape[1], 1)
  np.testing.assert_array_equal(picture[10:10 + left.shape[0], :left.shape[1]], left)
  np.testing.assert_array_equal(picture[10:10 + right.shape[0], left.shape[1] + 5:], right)
  assert picture[:10].max() > 128  # The titles (antialiased).
  with pytest.raises(ValueError, match='differ in size'):
    visualize.real_vs_fake(real, np.zeros((2, 5, 3, 1), np.float32))


def test_save_real_vs_fake_writes_a_png(tmp_path):
  path = tmp_path / 'cmp.png'
  visualize.save_real_vs_fake(str(path), _images(4), _images(4))
  with Image.open(path) as image:
    assert image.mode == 'L' and image.size == visualize.real_vs_fake(_images(4), _images(4)).shape[1::-1]
