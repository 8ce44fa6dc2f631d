"""Image grids of samples, saved as PNG."""

import math
import os

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray, data_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """float [..., H, W, C] in `data_range` -> uint8 in [0, 255], clipped."""
  lo, hi = data_range
  x = (np.asarray(images, np.float32) - lo) / (hi - lo)
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, data_range: tuple[float, float] = (-1.0, 1.0), columns: int = 0,
              padding: int = 2) -> np.ndarray:
  """images float [N, H, W, C] -> one uint8 [rows*(H+p)+p, cols*(W+p)+p, C] picture, row-major, black padding.

  `columns` 0 means a near-square grid (ceil(sqrt(N)) columns).
  """
  images = to_uint8(images, data_range)
  n, h, w, c = images.shape
  cols = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
  for i in range(n):
    r, k = divmod(i, cols)
    y, x = padding + r * (h + padding), padding + k * (w + padding)
    grid[y:y + h, x:x + w] = images[i]
  return grid


def save_grid(path: str, images: np.ndarray, data_range: tuple[float, float] = (-1.0, 1.0),
              columns: int = 0) -> None:
  """Writes `make_grid(images)` as a PNG at `path`, creating its directory."""
  grid = make_grid(images, data_range, columns)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
