"""The Flax InceptionV3 (dcgan_jax/eval/inception.py) against pytorch-fid's own network with random weights.

pytorch-fid builds its network from torchvision's Inception modules and loads the released weights from the web;
here its loader is replaced by one that keeps the freshly built network, whose weights and BatchNorm running
statistics are then randomized and saved as a state dict in pytorch-fid's key layout. The fast tests compare the
input resize and single blocks; the slow ones the whole network through the command line's main, and FID.
"""

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dcgan_jax import errors
from dcgan_jax import fid as fid_cli
from dcgan_jax import inception as inception_cli
from dcgan_jax.eval import metrics
from dcgan_jax.eval import scores
from dcgan_jax.eval import inception

# Kept alive for the process: the schema declarations below (see _import_pytorch_fid).
_TORCHVISION_SCHEMAS = []


def _import_pytorch_fid():
  """pytorch_fid.inception and fid_score, importing torchvision even where its C++ operators cannot load.

  The registry's torchvision wheels are CUDA builds; with the CPU torch of requirements-test.txt their `_C`
  extension does not load (it links libtorch_cuda.so). torchvision tolerates that everywhere except two unguarded
  `torch.library.register_fake('torchvision::nms' / 'qnms')` calls, which raise "operator torchvision::nms does not
  exist". pytorch-fid needs only torchvision's Python Inception modules, so on that error the two operators'
  schemas are declared (without kernels: calling them would fail; nothing here does) and the import is retried.
  With a torch whose torchvision ops load, the first import succeeds and nothing is declared.
  """
  try:
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import
  except RuntimeError as e:
    if 'torchvision::nms' not in str(e):
      raise
    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
      del sys.modules[name]
    library = torch.library.Library('torchvision', 'DEF')  # pylint: disable=no-member
    library.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    library.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    _TORCHVISION_SCHEMAS.append(library)
  from pytorch_fid import fid_score  # pylint: disable=g-import-not-at-top
  from pytorch_fid import inception as pytorch_fid_inception  # pylint: disable=g-import-not-at-top
  return pytorch_fid_inception, fid_score


def _randomize(model: torch.nn.Module) -> None:
  """He-scaled convolution weights and non-trivial BatchNorm affine parameters and running statistics."""
  generator = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
      elif isinstance(module, torch.nn.BatchNorm2d):
        channels = module.num_features
        module.weight.copy_(0.5 + torch.rand(channels, generator=generator))
        module.bias.copy_(0.2 * torch.randn(channels, generator=generator))
        module.running_mean.copy_(0.2 * torch.randn(channels, generator=generator))
        module.running_var.copy_(0.5 + torch.rand(channels, generator=generator))
      elif isinstance(module, torch.nn.Linear):
        module.weight.copy_(0.01 * torch.randn(module.weight.shape, generator=generator))


class Reference:
  """pytorch-fid's InceptionV3 (resize and normalize on, FID blocks) with random weights, and its state dict."""

  def __init__(self, directory):
    self.inception_module, self.fid_score = _import_pytorch_fid()
    import torchvision  # pylint: disable=g-import-not-at-top
    built = {}

    def keep(model, state_dict, *args, **kwargs):
      del state_dict, args, kwargs
      built['inception'] = model

    with pytest.MonkeyPatch.context() as patch:
      # No download: the network pytorch-fid builds is kept instead of being loaded with the release weights.
      patch.setattr(self.inception_module, 'load_state_dict_from_url', lambda *args, **kwargs: None)
      patch.setattr(torchvision.models.inception.Inception3, 'load_state_dict', keep)
      self.net = self.inception_module.InceptionV3([3], resize_input=True, normalize_input=True,
                                                   use_fid_inception=True).eval()
    self.full = built['inception'].eval()  # torchvision's Inception3 with pytorch-fid's blocks: the file's layout.
    _randomize(self.full)
    self.pth = str(directory / 'random_inception.pth')
    torch.save(self.full.state_dict(), self.pth)
    self.state = {k: v.numpy() for k, v in self.full.state_dict().items()}
    self.variables = inception.variables_from_state_dict(self.state)

  def features(self, images_uint8: np.ndarray) -> np.ndarray:
    """pytorch-fid's features of uint8 [N, H, W, 3] images: ToTensor (/255), then the network, [N, 2048]."""
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
      return self.net(x)[0][:, :, 0, 0].numpy()

  def block(self, name: str):
    """(torch module, Flax variables) of one block of the network."""
    return getattr(self.full, name), {c: self.variables[c][name] for c in ('params', 'batch_stats')}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  return Reference(tmp_path_factory.mktemp('inception'))


def _torch_nhwc(module, x: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def _assert_close(ours, theirs, rel=1e-3):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape
  scale = np.max(np.abs(theirs))
  assert scale > 0
  np.testing.assert_allclose(ours, theirs, rtol=rel, atol=rel * scale)


@pytest.mark.parametrize('shape', [(2, 32, 32, 3), (1, 64, 48, 3), (1, 512, 300, 3), (1, 299, 299, 3)])
def test_preprocess_matches_pytorch_fid_resize_and_scaling(shape):
  images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
  theirs = 2 * F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False) - 1
  ours = np.asarray(jax.jit(inception.preprocess)(images))
  assert ours.shape == (shape[0], 299, 299, 3)
  np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=0, atol=2e-6)


@pytest.mark.parametrize('size', [32, 48, 64, 100, 512])
def test_resize_matrix_is_pytorchs_bit_for_bit(size):
  # Resizing one-hot rows along H (W stays 1 wide) gives PyTorch's interpolation weights as a matrix.
  one_hot = torch.eye(size).reshape(size, 1, size, 1)
  theirs = F.interpolate(one_hot, size=(299, 1), mode='bilinear', align_corners=False)[:, 0, :, 0].T.numpy()
  np.testing.assert_array_equal(inception.resize_matrix(size), theirs)


def test_resize_matrix_rows_are_two_taps_summing_to_one():
  matrix = inception.resize_matrix(4, 6)
  np.testing.assert_allclose(matrix.sum(axis=1), np.ones(6), atol=1e-7)
  np.testing.assert_allclose(matrix[:2], [[1, 0, 0, 0], [0.5, 0.5, 0, 0]], atol=1e-7)
  np.testing.assert_array_equal(inception.resize_matrix(5, 5), np.eye(5, dtype=np.float32))


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
@pytest.mark.parametrize('name, module, channels', [
    ('Mixed_5b', inception.InceptionA(32), 192),
    ('Mixed_6b', inception.InceptionC(128), 768),
    ('Mixed_7b', inception.InceptionE(), 1280),
    ('Mixed_7c', inception.InceptionE(max_pool=True), 2048),
])
def test_one_block_matches_pytorch_fid(reference, name, module, channels):
  # The blocks with pytorch-fid's patched pools; a 5x5 input makes the padding's share in the averages large.
  x = np.abs(np.random.default_rng(1).normal(size=(2, 5, 5, channels))).astype(np.float32)
  theirs_module, variables = reference.block(name)
  _assert_close(jax.jit(module.apply)(variables, x), _torch_nhwc(theirs_module, x))


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
def test_state_dict_layout_is_pytorch_fids(reference):
  expected = {k: tuple(v.shape) for k, v in reference.state.items()
              if not k.startswith('fc.') and not k.endswith('num_batches_tracked')}
  assert {k: shape for k, (_, shape) in inception.state_dict_layout().items()} == expected
  assert len(expected) == 470


def _images(seed: int, shape) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.slow  # The whole network at 299 x 299 on 8 images, in JAX and in torch: 1-4 minutes.
def test_inception_command_matches_pytorch_fid_features_and_fid(reference, tmp_path):
  ours, theirs = [], []
  for size in (32, 64):
    images = _images(size, (4, size, size, 3))
    np.save(tmp_path / f'{size}.npy', images)
    # Batches of 3: the second is padded.
    status = inception_cli.main([f'--weights={reference.pth}', f'--images={tmp_path / f"{size}.npy"}',
                                 f'--out={tmp_path / f"{size}_features.npy"}', '--batch_size=3'])
    assert status == 0
    ours.append(np.load(tmp_path / f'{size}_features.npy'))
    theirs.append(reference.features(images))
    assert ours[-1].dtype == np.float32 and ours[-1].shape == (4, 2048)
    _assert_close(ours[-1], theirs[-1])
  stats = [(f.mean(axis=0), np.cov(f, rowvar=False)) for f in theirs]
  expected = reference.fid_score.calculate_frechet_distance(*stats[0], *stats[1])
  assert metrics.fid(*ours) == pytest.approx(expected, rel=1e-3)


def test_as_rgb_repeats_one_channel_and_keeps_three():
  gray = _images(5, (2, 4, 6))
  np.testing.assert_array_equal(inception.as_rgb(gray), np.stack([gray] * 3, axis=-1))
  np.testing.assert_array_equal(inception.as_rgb(gray[..., None]), np.stack([gray] * 3, axis=-1))
  rgb = _images(6, (1, 4, 4, 3))
  np.testing.assert_array_equal(inception.as_rgb(rgb), rgb)
  with pytest.raises(errors.DataError, match=r'got uint8 \[2, 4, 4, 2\]'):
    inception.as_rgb(_images(0, (2, 4, 4, 2)))
  with pytest.raises(errors.DataError, match=r'got int32 \[2, 4, 4, 3\]'):
    inception.as_rgb(np.zeros((2, 4, 4, 3), np.int32))


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
def test_convert_writes_an_npz_with_the_same_weights_and_the_source_sha256(reference, tmp_path, capsys):
  out = tmp_path / 'w.npz'
  assert inception_cli.main([f'--convert={reference.pth}', f'--out={out}']) == 0
  from_pth, from_npz = inception.load_weights(reference.pth), inception.load_weights(str(out))
  assert from_npz.source_sha256 == from_pth.sha256 == inception.file_sha256(reference.pth)
  assert from_npz.sha256 == inception.file_sha256(str(out)) != from_pth.sha256
  jax.tree.map(np.testing.assert_array_equal, from_npz.variables, from_pth.variables)
  assert not from_npz.is_release
  assert f'converted from a .pth with sha256 {from_pth.sha256}' in capsys.readouterr().out


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
def test_an_npz_loads_without_torch_and_a_pth_needs_it(reference, tmp_path, monkeypatch):
  npz = tmp_path / 'w.npz'
  inception.convert(reference.pth, str(npz))
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` now raises ImportError.
  assert inception.load_weights(str(npz)).source_sha256 == inception.file_sha256(reference.pth)
  with pytest.raises(errors.UserError, match=r'needs torch \(pip install torch\); or convert it to .npz where'):
    inception.load_weights(reference.pth)
  with pytest.raises(errors.UserError, match=r'--out=w.pth must end in .npz'):
    inception.convert(str(npz), 'w.pth')


def _pixel_features(weights, images, batch_size=50, dim=2048):
  """A cheap stand-in for the network: a fixed random projection of the images' 4x4 mean colors, [N, dim]."""
  del weights, batch_size
  x = inception.as_rgb(images).astype(np.float32) / 255.0
  n, h, w, _ = x.shape
  means = x.reshape(n, 4, h // 4, 4, w // 4, 3).mean(axis=(2, 4)).reshape(n, -1)
  return np.maximum(means @ np.random.default_rng(0).normal(size=(48, dim)), 0).astype(np.float32)


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
def test_fid_command_prints_the_protocol_and_fid_kid_last(reference, tmp_path, capsys, monkeypatch):
  # The command's plumbing, with a cheap 32-d feature map; the slow test below runs the network.
  features = functools.partial(_pixel_features, dim=32)
  monkeypatch.setattr(inception, 'extract_features', features)
  real, fake = _images(1, (6, 32, 32, 3)), _images(2, (5, 32, 32, 3))
  np.save(tmp_path / 'real.npy', real)
  (tmp_path / 'fake').mkdir()
  for i, image in enumerate(fake):
    Image.fromarray(image).save(tmp_path / 'fake' / f'{i}.png')
  status = fid_cli.main([f'--weights={reference.pth}', f'--real={tmp_path / "real.npy"}',
                         f'--fake={tmp_path / "fake"}', '--kid_subsets=10'])
  assert status == 0
  lines = capsys.readouterr().out.strip().splitlines()
  fid = metrics.fid(features(0, real), features(0, fake))
  kid = metrics.kid(features(0, fake), features(0, real), 10, 1000, 2020)
  assert lines[-1] == f'FID {fid:.4f} KID {kid.mean:.6f} ± {kid.stderr:.6f}'
  assert lines[:2] == [
      'feature network: pytorch-fid InceptionV3 (FID variant), pool3, 2048-d, float32',
      f'weights: random_inception.pth sha256 {inception.file_sha256(reference.pth)} (NOT the pytorch-fid release '
      f'weights ({inception.EXPECTED_FILE}): not comparable to papers)']
  assert lines[2] == (f'real: 6 images of {tmp_path / "real.npy"}; resize bilinear 32x32 -> 299x299 '
                      '(align_corners=False, no antialiasing); [0, 255] -> [-1, 1]')
  assert lines[3] == 'real: only 6 images (< 2048): FID is biased upwards; papers use 10k-50k'
  assert lines[4].startswith(f'fake: 5 images of the folder {tmp_path / "fake"}; resize bilinear 32x32')
  assert lines[-2] == (f'KID: unbiased MMD^2, kernel (x.y/32 + 1)^3, 10 subsets of 5, seed 2020; mean ± standard '
                       f'error (std {kid.std:.6f})')


@pytest.mark.slow  # The whole network at 299 x 299 on 7 images, in JAX and in torch: 1-2 minutes.
def test_fid_command_matches_pytorch_fid(reference, tmp_path, capsys):
  real, fake = _images(1, (3, 32, 32, 3)), _images(2, (4, 32, 32, 3))
  np.save(tmp_path / 'real.npy', real)
  (tmp_path / 'fake').mkdir()
  for i, image in enumerate(fake):
    Image.fromarray(image).save(tmp_path / 'fake' / f'{i}.png')
  status = fid_cli.main([f'--weights={reference.pth}', f'--real={tmp_path / "real.npy"}',
                         f'--fake={tmp_path / "fake"}', '--kid_subsets=10'])
  assert status == 0
  lines = capsys.readouterr().out.strip().splitlines()
  expected_fid, expected_kid, _ = scores.fid_kid(inception.extract_features(reference.variables, real),
                                                 inception.extract_features(reference.variables, fake), 10)
  assert lines[-1] == f'FID {expected_fid:.4f} KID {expected_kid.mean:.6f} ± {expected_kid.stderr:.6f}'
  text = '\n'.join(lines)
  assert f'sha256 {inception.file_sha256(reference.pth)}' in text
  assert 'NOT the pytorch-fid release weights' in text
  assert f'real: 3 images of {tmp_path / "real.npy"}; resize bilinear 32x32 -> 299x299' in text
  assert f'fake: 4 images of the folder {tmp_path / "fake"}' in text
  assert 'KID: unbiased MMD^2, kernel (x.y/2048 + 1)^3, 10 subsets of 3, seed 2020' in text
  theirs_real, theirs_fake = reference.features(real), reference.features(fake)
  expected = reference.fid_score.calculate_frechet_distance(
      theirs_real.mean(0), np.cov(theirs_real, rowvar=False), theirs_fake.mean(0), np.cov(theirs_fake, rowvar=False))
  assert expected_fid == pytest.approx(expected, rel=1e-3)


def _broken_weights(reference, directory, kind):
  """A weights file broken in one way, and the words its error must contain."""
  state = {k: v for k, v in reference.state.items() if not k.endswith('num_batches_tracked')}
  path = directory / f'{kind}.npz'
  if kind == 'missing':
    return directory / 'absent.pth', 'does not exist'
  if kind == 'not_a_weights_file':
    path = directory / 'text.pth'
    path.write_text('not weights')
    return path, 'as a PyTorch state dict'
  if kind == 'pickled_list':
    path = directory / 'list.pth'
    torch.save([1, 2], path)
    return path, 'holds a list, not a state dict'
  if kind == 'unrelated':
    state = {'weight': np.zeros(3, np.float32)}
    words = 'holds no InceptionV3 weights'
  elif kind == 'missing_key':
    del state['Mixed_6c.branch7x7_2.conv.weight']
    words = 'lacks 1 of the 470 InceptionV3 weights (e.g. Mixed_6c.branch7x7_2.conv.weight)'
  elif kind == 'wrong_shape':
    state['Conv2d_1a_3x3.conv.weight'] = np.zeros((32, 3, 5, 5), np.float32)
    words = 'Conv2d_1a_3x3.conv.weight (32, 3, 5, 5) instead of (32, 3, 3, 3)'
  elif kind == 'imagenet_head':
    state['fc.weight'] = np.zeros((1000, 2048), np.float32)
    words = '1000-class head'
  np.savez(path, **state)
  return path, words


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
@pytest.mark.parametrize('kind', ['missing', 'not_a_weights_file', 'pickled_list', 'unrelated', 'missing_key',
                                  'wrong_shape', 'imagenet_head'])
def test_a_bad_weights_file_is_one_line_naming_the_expected_file(reference, tmp_path, capsys, kind):
  path, words = _broken_weights(reference, tmp_path, kind)
  np.save(tmp_path / 'x.npy', _images(0, (2, 8, 8, 3)))
  status = inception_cli.main([f'--weights={path}', f'--images={tmp_path / "x.npy"}', f'--out={tmp_path / "f.npy"}'])
  err = capsys.readouterr().err
  assert status == 2
  assert err.count('\n') == 1 and err.startswith('Error: ') and words in err
  assert inception.EXPECTED_FILE in err
  assert not (tmp_path / 'f.npy').exists()


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
def test_bad_images_and_flags_are_one_line_and_status_2(reference, tmp_path, capsys):
  np.save(tmp_path / 'float.npy', np.zeros((2, 8, 8, 3), np.float32))
  assert inception_cli.main([f'--weights={reference.pth}', f'--images={tmp_path / "float.npy"}',
                             f'--out={tmp_path / "f.npy"}']) == 2
  assert capsys.readouterr().err == (f'Error: {tmp_path / "float.npy"} holds float32 values; pass uint8 images in '
                                     '0..255 (for float samples in [-1, 1]: np.round((x + 1) * 127.5).astype('
                                     'np.uint8))\n')
  np.save(tmp_path / 'one.npy', _images(0, (1, 8, 8, 3)))
  assert fid_cli.main([f'--weights={reference.pth}', f'--real={tmp_path / "one.npy"}',
                       f'--fake={tmp_path / "one.npy"}']) == 2
  assert capsys.readouterr().err == 'Error: --real has 1 image; FID and KID need at least 2\n'
  with pytest.raises(SystemExit) as exit_info:
    fid_cli.main(['--weights=w.npz', '--real=a.npy'])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == ('Error: the following arguments are required: --fake. Pass --help to list the '
                                     'flags.\n')


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
def test_inception_evaluator_caches_the_real_features_and_scores_samples(reference, tmp_path, monkeypatch):
  calls = []

  def counting_features(weights, images, batch_size=50):
    calls.append(len(images))
    return _pixel_features(weights, images, batch_size, dim=32)  # 32-d: the 2048-d linear algebra is slow.

  monkeypatch.setattr(inception, 'extract_features', counting_features)
  real = _images(3, (12, 16, 16, 3))
  build = lambda: scores.InceptionEvaluator(reference.pth, real, (-1.0, 1.0), str(tmp_path), max_real=10, seed=1)
  evaluator = build()
  assert calls == [10] and len(list(tmp_path.glob('inception_real_*.npy'))) == 1
  assert np.array_equal(build().real_features, evaluator.real_features) and calls == [10]  # From the cache.
  generated = np.random.default_rng(0).uniform(-1, 1, (6, 16, 16, 3)).astype(np.float32)
  result = evaluator.evaluate(generated)
  quantized = np.clip(np.round((generated + 1) / 2 * 255), 0, 255).astype(np.uint8)
  features = _pixel_features(None, quantized, dim=32)
  kid = metrics.kid(features, evaluator.real_features, 100, 1000, 2020)
  assert result == {'inception_fid': pytest.approx(metrics.fid(features, evaluator.real_features), rel=1e-9),
                    'inception_kid': kid.mean, 'inception_kid_stderr': kid.stderr}
  generated[0, 0, 0, 0] = np.nan
  assert all(np.isnan(v) for v in evaluator.evaluate(generated).values())
  protocol = evaluator.protocol(6)
  assert (protocol['num_real'], protocol['num_fake'], protocol['release_weights']) == (10, 6, False)
  assert protocol['weights_sha256'] == inception.file_sha256(reference.pth)
  assert protocol['resize'].startswith('bilinear 16x16 -> 299x299')


@pytest.mark.slow  # The full-size network (the reference fixture: 23.8M parameters, a 95 MB weights file).
def test_an_rgb_run_scores_inception_fid_and_keeps_the_best_checkpoint_by_it(reference, tmp_path, monkeypatch,
                                                                             capsys):
  import conftest  # pylint: disable=g-import-not-at-top
  from dcgan_jax.trainer import loop  # pylint: disable=g-import-not-at-top
  # The network itself is tested above; 32-d stand-in features keep the linear algebra cheap.
  monkeypatch.setattr(inception, 'extract_features', functools.partial(_pixel_features, dim=32))
  (tmp_path / 'data').mkdir()
  for i, image in enumerate(_images(4, (24, 28, 28, 3))):
    Image.fromarray(image).save(tmp_path / 'data' / f'{i:02d}.png')
  config = conftest.tiny_config()
  config.data.source, config.data.path, config.data.channels = 'folder', str(tmp_path / 'data'), 3
  config.num_train_steps, config.eval_every_steps, config.eval_num_samples = 4, 1000, 8  # 3 steps per epoch.
  config.eval_inception_weights, config.eval_cache_dir = reference.pth, str(tmp_path / 'cache')
  workdir = tmp_path / 'run'
  loop.train_and_evaluate(config, str(workdir))
  history = json.loads((workdir / 'history.json').read_text())
  assert [step for step, _ in history['inception_fid']] == [0, 3, 4]
  assert [step for step, _ in history['inception_kid']] == [0, 3, 4]
  assert 'fid' not in history  # No classifier for RGB folders.
  assert (history['inception_protocol']['num_real'], history['inception_protocol']['num_fake']) == (24, 8)
  best = json.loads((workdir / 'best.json').read_text())
  assert best['metric'] == 'inception_fid'
  assert best['fid'] == pytest.approx(min(v for _, v in history['inception_fid']), rel=1e-6)
  assert [p.name for p in (workdir / 'checkpoints_best').iterdir() if p.name.isdigit()] == [str(best['step'])]
  assert (workdir / 'curves.png').exists()
  # The fid command samples the run's best checkpoint for --fake=WORKDIR.
  samples, origin = scores.sample_run(str(workdir), 6, seed=1)
  assert samples.dtype == np.uint8 and samples.shape == (6, 28, 28, 3)
  assert origin == f'best checkpoint (step {best["step"]})'
  np.testing.assert_array_equal(scores.sample_run(str(workdir), 6, seed=1)[0], samples)
  assert not np.array_equal(scores.sample_run(str(workdir), 6, seed=2)[0], samples)
  np.save(tmp_path / 'real.npy', _images(7, (5, 28, 28, 3)))
  capsys.readouterr()
  assert fid_cli.main([f'--weights={reference.pth}', f'--real={tmp_path / "real.npy"}', f'--fake={workdir}',
                       '--num_fake=6', '--seed=1', '--kid_subsets=5']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[4].startswith(f'fake: 6 samples of the run {workdir}, best checkpoint (step {best["step"]}), seed 1;')
  assert lines[-1].startswith('FID ')


@pytest.mark.slow  # Starts python processes (JAX and torch imports).
def test_the_commands_exit_with_status_2_and_one_line_on_bad_input(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import conftest  # pylint: disable=g-import-not-at-top

  def stderr_of(module, *flags):
    result = subprocess.run([sys.executable, '-m', module, f'--weights={tmp_path / "absent.pth"}', *flags],
                            capture_output=True, text=True, env=conftest.subprocess_env(), cwd=conftest.ROOT,
                            timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    return result.stderr

  x, absent, out = tmp_path / 'x.npy', tmp_path / 'absent.npy', tmp_path / 'f.npy'
  np.save(x, _images(0, (2, 8, 8, 3)))
  # A bad image source is reported before the weights are read (which do not exist either).
  no_source = f'Error: {absent} is neither a .npy image array, an image folder nor a training run directory\n'
  assert stderr_of('dcgan_jax.inception', f'--images={absent}', f'--out={out}') == no_source
  assert stderr_of('dcgan_jax.fid', f'--real={x}', f'--fake={absent}') == no_source
  no_weights = (f'Error: Inception weights file {tmp_path / "absent.pth"} does not exist; pass '
                f'{inception.EXPECTED_FILE} from the pytorch-fid releases ({inception.WEIGHTS_URL}) or the .npz that '
                '`python -m dcgan_jax.inception --convert=IN.pth --out=OUT.npz` writes from it\n')
  assert stderr_of('dcgan_jax.inception', f'--images={x}', f'--out={out}') == no_weights
  assert stderr_of('dcgan_jax.fid', f'--real={x}', f'--fake={x}') == no_weights
