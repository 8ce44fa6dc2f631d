"""Pictures of what the GAN learns: sample grids (PNG), their animation over training (GIF), real-vs-fake
comparisons, discriminator scores per image, and plots of the training curves."""

import math
import os
from typing import Sequence, Union

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont


def to_uint8(images: np.ndarray, data_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """float [..., H, W, C] in `data_range` -> uint8 in [0, 255], clipped."""
  lo, hi = data_range
  x = (np.asarray(images, np.float32) - lo) / (hi - lo)
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _tile_layout(n: int, columns: int, cell_h: int, cell_w: int,
                 padding: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
  """Where n tiles of cell_h x cell_w pixels go, row-major with `padding` black pixels around each.

  Args:
    n: number of tiles.
    columns: tiles per row (0: near-square, ceil(sqrt(n)) columns).
    cell_h: height of one tile's cell (the image and anything under it).
    cell_w: width of one tile's cell.
    padding: black pixels between tiles and at the border.

  Returns:
    ((canvas height, canvas width), [(y, x) of tile i's top-left corner for i in range(n)]).
  """
  cols = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  corners = [(padding + r * (cell_h + padding), padding + k * (cell_w + padding))
             for r, k in (divmod(i, cols) for i in range(n))]
  return (rows * (cell_h + padding) + padding, cols * (cell_w + padding) + padding), corners


def make_grid(images: np.ndarray, data_range: tuple[float, float] = (-1.0, 1.0), columns: int = 0,
              padding: int = 2) -> np.ndarray:
  """images float [N, H, W, C] -> one uint8 [rows*(H+p)+p, cols*(W+p)+p, C] picture, row-major, black padding.

  `columns` 0 means a near-square grid (ceil(sqrt(N)) columns).
  """
  images = to_uint8(images, data_range)
  n, h, w, c = images.shape
  shape, corners = _tile_layout(n, columns, h, w, padding)
  grid = np.zeros(shape + (c,), np.uint8)
  for i, (y, x) in enumerate(corners):
    grid[y:y + h, x:x + w] = images[i]
  return grid


def save_grid(path: str, images: np.ndarray, data_range: tuple[float, float] = (-1.0, 1.0),
              columns: int = 0) -> None:
  """Writes `make_grid(images)` as a PNG at `path`, creating its directory."""
  grid = make_grid(images, data_range, columns)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def save_image(path: str, picture: np.ndarray) -> None:
  """Writes a uint8 picture [H, W] or [H, W, C] (C 1, 3 or 4) as an image file at `path`, creating its directory."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(picture[..., 0] if picture.ndim == 3 and picture.shape[-1] == 1 else picture).save(path)


def _as_pil(frame: Union[str, np.ndarray]) -> Image.Image:
  if isinstance(frame, (str, os.PathLike)):
    with Image.open(frame) as image:
      image.load()
      return image.copy()
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(f'frames must be uint8 pictures (e.g. make_grid output), got dtype {frame.dtype}')
  if frame.ndim == 3 and frame.shape[-1] == 1:
    frame = frame[..., 0]
  return Image.fromarray(frame)


def save_gif(frames: Sequence[Union[str, np.ndarray]], out_path: str, duration_ms: int = 200, loop: int = 0) -> None:
  """Writes an animated GIF, e.g. of the sample grids over training (`sorted(glob('samples/step_*.png'))`).

  Grayscale frames keep their exact values; colour frames are reduced to a 256-colour palette by Pillow. Pillow
  merges identical consecutive frames into one longer frame.

  Args:
    frames: image paths (PNG), or uint8 pictures [H, W] or [H, W, C] with C 1 or 3, all of one size.
    out_path: the .gif to write; its directory is created.
    duration_ms: display time of each frame, in milliseconds.
    loop: times the animation repeats (0: forever).
  """
  if not frames:
    raise ValueError('save_gif needs at least one frame')
  images = [_as_pil(f) for f in frames]
  sizes = {image.size for image in images}
  if len(sizes) > 1:
    raise ValueError(f'all frames must have one size, got (width, height) {sorted(sizes)}')
  modes = {image.mode for image in images}
  # One mode for all frames, so that grayscale animations stay grayscale and mixed inputs do not fail.
  mode = 'L' if modes <= {'L'} else 'RGB'
  images = [image.convert(mode) for image in images]
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  images[0].save(out_path, save_all=True, append_images=images[1:], duration=int(duration_ms), loop=int(loop))


# Series drawn together, in this order; every other series gets a panel of its own after these.
_PANELS = (
    ('Losses', lambda key: 'loss' in key),
    ('Discriminator outputs', lambda key: key in ('d_real', 'd_fake')),
    ('FID', lambda key: key == 'fid'),
)
_LABELS = {'d_real': 'D(x)', 'd_fake': 'D(G(z))'}


def plot_history(history: dict[str, Sequence[tuple[int, float]]], out_path: str, title: str = '') -> list[str]:
  """Plots training curves over steps into a PNG, one panel per group of series.

  Panels: 'Losses' (every key containing 'loss'), 'Discriminator outputs' (`d_real` as D(x) and `d_fake` as
  D(G(z))), 'FID' (`fid`, on a log scale when positive, as it falls over orders of magnitude), then one panel per
  remaining key, named by the key, in sorted order. Keys with no points are left out.

  Args:
    history: `{metric name: [(step, value), ...]}`.
    out_path: the .png to write; its directory is created.
    title: drawn above the panels.

  Returns:
    The panel titles, top to bottom.
  """
  # Imported here: matplotlib is slow to import and only this function needs it. The object-oriented API (no
  # pyplot) leaves global state and the interactive backend alone.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  keys = [key for key in history if len(history[key])]
  panels = []
  for name, belongs in _PANELS:
    members = [key for key in keys if belongs(key)]
    if members:
      panels.append((name, members))
  grouped = {key for _, members in panels for key in members}
  panels += [(key, [key]) for key in sorted(keys) if key not in grouped]
  if not panels:
    raise ValueError('plot_history needs at least one series with points')

  figure = Figure(figsize=(7, 2.4 * len(panels)), layout='constrained')
  axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
  for ax, (name, members) in zip(axes, panels):
    for key in members:
      points = np.asarray(history[key], np.float64).reshape(-1, 2)
      ax.plot(points[:, 0], points[:, 1], label=_LABELS.get(key, key), marker='.' if len(points) < 30 else None)
    if name == 'FID' and all(value > 0 for _, value in history['fid']):
      ax.set_yscale('log')
    ax.set_title(name)
    ax.grid(alpha=0.3)
    if len(members) > 1:
      ax.legend()
  axes[-1].set_xlabel('step')
  if title:
    figure.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  figure.savefig(out_path, dpi=100)
  return [name for name, _ in panels]


def _font(size: int) -> ImageFont.ImageFont:
  return ImageFont.load_default(size=size)


def annotate_scores(images: np.ndarray, scores: Sequence[float], data_range: tuple[float, float] = (-1.0, 1.0),
                    columns: int = 0, padding: int = 2, label_height: int = 12, fmt: str = '{:.2f}') -> np.ndarray:
  """A grid of images with each image's score written in a band under its tile, e.g. D(x) per image.

  Scores of 0.5 or more (the discriminator calls the image real) are written in green, lower ones in red.

  Args:
    images: float [N, H, W, C] in `data_range`, C 1 or 3.
    scores: N floats, e.g. sigmoid(D logits) in [0, 1].
    data_range: the images' range.
    columns: tiles per row (0: near-square).
    padding: black pixels between tiles.
    label_height: height of the band under each tile.
    fmt: how each score is written; keep it short enough for the tile width (4 characters fit 28 pixels).

  Returns:
    uint8 RGB [rows * (H + label_height + padding) + padding, cols * (W + padding) + padding, 3]: tile i at
    row-major position (r, k) has its top-left corner at (padding + r * (H + label_height + padding),
    padding + k * (W + padding)) and its label band right below it.
  """
  pixels = to_uint8(images, data_range)
  n, h, w, c = pixels.shape
  scores = [float(s) for s in scores]
  if len(scores) != n:
    raise ValueError(f'{n} images but {len(scores)} scores; give one score per image')
  if c == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  shape, corners = _tile_layout(n, columns, h + label_height, w, padding)
  canvas = np.zeros(shape + (3,), np.uint8)
  for i, (y, x) in enumerate(corners):
    canvas[y:y + h, x:x + w] = pixels[i]
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  font = _font(max(label_height - 2, 6))
  for score, (y, x) in zip(scores, corners):
    color = (80, 220, 80) if score >= 0.5 else (240, 80, 80)
    draw.text((x + w / 2, y + h + label_height / 2), fmt.format(score), fill=color, font=font, anchor='mm')
  annotated = np.asarray(picture).copy()
  # Text must not spill onto the images: restore every tile (a long label may overflow its band sideways).
  for i, (y, x) in enumerate(corners):
    annotated[y:y + h, x:x + w] = pixels[i]
  return annotated


def real_vs_fake(real: np.ndarray, fake: np.ndarray, data_range: tuple[float, float] = (-1.0, 1.0),
                 columns: int = 0, gap: int = 8, header: int = 14) -> np.ndarray:
  """Real images and generated ones side by side: `make_grid(real)` left, `make_grid(fake)` right, titled.

  Args:
    real: float [N, H, W, C] in `data_range` (uint8 real images: convert with `input_pipeline.to_float`).
    fake: float [M, H, W, C] in `data_range`, same H, W, C.
    data_range: both sets' range.
    columns: tiles per row of each grid (0: near-square).
    gap: black columns between the two grids.
    header: height of the band above the grids holding the words 'real' and 'generated'.

  Returns:
    uint8 [header + max(grid heights), real grid width + gap + fake grid width, C]: the real grid's top-left
    corner at (header, 0), the fake grid's at (header, real grid width + gap); the rest is black.
  """
  if np.shape(real)[1:] != np.shape(fake)[1:]:
    raise ValueError(f'real images {np.shape(real)[1:]} and fakes {np.shape(fake)[1:]} differ in size')
  left, right = make_grid(real, data_range, columns), make_grid(fake, data_range, columns)
  height = header + max(left.shape[0], right.shape[0])
  channels = left.shape[-1]
  canvas = np.zeros((height, left.shape[1] + gap + right.shape[1], channels), np.uint8)
  canvas[header:header + left.shape[0], :left.shape[1]] = left
  canvas[header:header + right.shape[0], left.shape[1] + gap:] = right
  if header:
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    draw = ImageDraw.Draw(picture)
    font = _font(max(header - 3, 6))
    white = 255 if channels == 1 else (255, 255, 255)
    draw.text((left.shape[1] / 2, header / 2), 'real', fill=white, font=font, anchor='mm')
    draw.text((left.shape[1] + gap + right.shape[1] / 2, header / 2), 'generated', fill=white, font=font, anchor='mm')
    titled = np.asarray(picture).reshape(canvas.shape)
    # Only the header band takes the text.
    canvas[:header] = titled[:header]
  return canvas


def save_real_vs_fake(path: str, real: np.ndarray, fake: np.ndarray,
                      data_range: tuple[float, float] = (-1.0, 1.0), columns: int = 0) -> None:
  """Writes `real_vs_fake(real, fake)` as a PNG at `path`, creating its directory."""
  save_image(path, real_vs_fake(real, fake, data_range, columns))
