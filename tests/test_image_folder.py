"""The folder source: a generated folder of PNG/JPEG/WebP/BMP files in every mode loads with the documented
conversions; bad files are skipped and counted; empty and missing folders are clear errors."""

import pathlib

import ml_collections
import numpy as np
from PIL import Image
import pytest

from dcgan_jax import errors
from dcgan_jax.data import image_folder
from dcgan_jax.data import input_pipeline

S = 8  # Target size.


def _rgb(color, size=(S, S)):
  return Image.new('RGB', (size[0], size[1]), color)


def _make_folder(root):
  """Writes one file per case; returns {relative path: expected RGB array} for the exact cases."""
  (root / 'sub' / 'deeper').mkdir(parents=True)
  expected = {}
  # Wider than tall: 3S x S with red | green | blue thirds; the center crop keeps exactly the green third (scale 1).
  wide = Image.new('RGB', (3 * S, S))
  for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
    wide.paste(color, (i * S, 0, (i + 1) * S, S))
  wide.save(root / 'a_wide.png')
  expected['a_wide.png'] = (0, 255, 0)
  # A 2S x 2S constant image shrinks to the same constant.
  _rgb((10, 20, 30), (2 * S, 2 * S)).save(root / 'b_large.bmp')
  expected['b_large.bmp'] = (10, 20, 30)
  # Grayscale -> RGB repeats the value.
  Image.new('L', (S, S), 77).save(root / 'c_gray.png')
  expected['c_gray.png'] = (77, 77, 77)
  # Fully transparent RGBA (with a color that must not show) -> white.
  Image.new('RGBA', (S, S), (200, 0, 0, 0)).save(root / 'd_rgba.png')
  expected['d_rgba.png'] = (255, 255, 255)
  # Palette image: its palette color.
  palette = Image.new('P', (S, S), 1)
  palette.putpalette([0, 0, 0, 40, 50, 60] + [0] * 762)
  palette.save(root / 'e_palette.png')
  expected['e_palette.png'] = (40, 50, 60)
  # Palette with a transparent index -> white.
  palette.save(root / 'e_palette_transparent.png', transparency=1)
  expected['e_palette_transparent.png'] = (255, 255, 255)
  # 16-bit grayscale keeps the high byte: 40000 // 256 = 156.
  Image.fromarray(np.full((S, S), 40000, np.uint16)).save(root / 'f_gray16.png')
  expected['f_gray16.png'] = (156, 156, 156)
  # Upper-case extension, nested: a JPEG (lossy, so checked approximately).
  _rgb((0, 0, 250), (S, 2 * S)).save(root / 'sub' / 'deeper' / 'g.JPEG', quality=95)
  _rgb((250, 250, 0)).save(root / 'sub' / 'h.webp', lossless=True)
  expected['sub/h.webp'] = (250, 250, 0)
  (root / 'notes.txt').write_text('not an image')
  return expected


def test_folder_loads_every_kind_with_the_documented_conversions(tmp_path):
  expected = _make_folder(tmp_path)
  files = [str(pathlib.Path(p).relative_to(tmp_path)) for p in image_folder.list_images(str(tmp_path))]
  assert files == ['a_wide.png', 'b_large.bmp', 'c_gray.png', 'd_rgba.png', 'e_palette.png',
                   'e_palette_transparent.png', 'f_gray16.png', 'sub/h.webp', 'sub/deeper/g.JPEG']
  images = image_folder.load_folder(str(tmp_path), S, 3, num_threads=2)
  assert images.shape == (9, S, S, 3) and images.dtype == np.uint8
  for i, name in enumerate(files):
    if name in expected:
      np.testing.assert_array_equal(images[i], np.broadcast_to(expected[name], (S, S, 3)), err_msg=name)
  np.testing.assert_allclose(images[files.index('sub/deeper/g.JPEG')].mean(axis=(0, 1)), (0, 0, 250), atol=3)


def test_folder_to_grayscale_uses_luma(tmp_path):
  _rgb((255, 0, 0)).save(tmp_path / 'red.png')
  Image.fromarray(np.full((S, S), 65535, np.uint16)).save(tmp_path / 'white16.png')
  images = image_folder.load_folder(str(tmp_path), S, 1)
  assert images.shape == (2, S, S, 1)
  # ITU-R 601-2: 255 * 0.299 = 76.2; the 16-bit maximum maps to 255.
  assert images[0].min() == images[0].max() == 76 and images[1].min() == 255


def test_unreadable_files_are_skipped_and_counted_in_one_warning(tmp_path, monkeypatch):
  _rgb((1, 2, 3)).save(tmp_path / 'good.png')
  (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(30))
  (tmp_path / 'empty.jpg').write_bytes(b'')
  truncated = (tmp_path / 'good.png').read_bytes()
  (tmp_path / 'truncated.png').write_bytes(truncated[:len(truncated) // 2])
  warnings = []
  monkeypatch.setattr(image_folder.logging, 'warning', lambda msg, *args: warnings.append(msg % args))
  images = image_folder.load_folder(str(tmp_path), S, 3)
  assert images.shape == (1, S, S, 3) and tuple(images[0, 0, 0]) == (1, 2, 3)
  assert len(warnings) == 1 and '\n' not in warnings[0]
  assert warnings[0].startswith(f'Skipped 3 of 4 image files under {tmp_path}')
  assert 'broken.png' in warnings[0] and 'empty.jpg' in warnings[0]


def test_folder_errors_name_the_path_and_the_fix(tmp_path):
  with pytest.raises(errors.DataError, match='no image files .* under .*fix --config.data.path'):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'readme.txt').write_text('x')
    image_folder.load_folder(str(tmp_path / 'empty'), S, 3)
  with pytest.raises(errors.DataError, match=f'image folder {tmp_path}/missing does not exist'):
    image_folder.load_folder(str(tmp_path / 'missing'), S, 3)
  with pytest.raises(errors.DataError, match='config.data.path is empty'):
    image_folder.load_folder('', S, 3)
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'x.png').write_bytes(b'nope')
  with pytest.raises(errors.DataError, match=r'none of the 1 image files under .*bad can be decoded \(e.g. x.png'):
    image_folder.load_folder(str(tmp_path / 'bad'), S, 3)


def _random_pngs(root, count):
  root.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (S + 2 * i, S, 3), dtype=np.uint8)).save(root / f'{i:02d}.png')
  return root


def test_a_folder_above_max_host_bytes_streams_exactly_the_in_memory_images(tmp_path, caplog):
  folder = _random_pngs(tmp_path / 'imgs', 5)
  (folder / 'zz_broken.png').write_bytes(b'not a png')
  in_memory = image_folder.load_folder(str(folder), S, 3)
  streamed = image_folder.load_folder(str(folder), S, 3, max_bytes=1)
  assert isinstance(streamed, image_folder.StreamedFolder)
  assert 'Skipped 1 of 6 image files' in caplog.text  # Found from the headers, before training.
  assert streamed.shape == in_memory.shape == (5, S, S, 3) and streamed.dtype == np.uint8
  assert streamed.nbytes == in_memory.nbytes
  index = np.array([[3, 0], [4, 4]])
  np.testing.assert_array_equal(streamed[index], in_memory[index])
  np.testing.assert_array_equal(streamed[2], in_memory[2])
  np.testing.assert_array_equal(streamed[1:3], in_memory[1:3])
  np.testing.assert_array_equal(streamed.subset(np.array([1, 3]))[1], in_memory[3])
  np.testing.assert_array_equal(streamed.transpose_images()[0], in_memory[0].transpose(1, 0, 2))
  # Half of the machine's memory is the default limit.
  monkeypatch = pytest.MonkeyPatch()
  monkeypatch.setattr(image_folder, '_memory_bytes', lambda: 2 * in_memory.nbytes - 2)
  assert isinstance(image_folder.load_folder(str(folder), S, 3), image_folder.StreamedFolder)
  monkeypatch.undo()
  assert image_folder._memory_bytes() > 2**30  # pylint: disable=protected-access


def test_a_streamed_file_that_stops_decoding_names_itself(tmp_path):
  folder = _random_pngs(tmp_path / 'imgs', 2)
  streamed = image_folder.load_folder(str(folder), S, 3, max_bytes=1)
  (folder / '01.png').write_bytes((folder / '01.png').read_bytes()[:40])  # Truncated after the start.
  with pytest.raises(errors.DataError, match=r'01.png can no longer be decoded .*remove or replace it'):
    streamed[np.array([0, 1])]


def _data_config(**overrides):
  config = ml_collections.ConfigDict(dict(source='folder', name='', split='train', path='', data_dir='',
                                          image_size=S, channels=3, transpose=False))
  config.update(overrides)
  return config


def test_load_images_dispatches_folder_and_transposes(tmp_path):
  picture = np.arange(S * S * 3, dtype=np.uint8).reshape(S, S, 3)
  Image.fromarray(picture).save(tmp_path / 'p.png')
  images = input_pipeline.load_images(_data_config(path=str(tmp_path)))
  np.testing.assert_array_equal(images[0], picture)
  transposed = input_pipeline.load_images(_data_config(path=str(tmp_path), transpose=True))
  np.testing.assert_array_equal(transposed[0], picture.transpose(1, 0, 2))
  assert transposed.flags['C_CONTIGUOUS']
