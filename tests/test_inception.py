"""The Flax InceptionV3 (dcgan_jax/eval/inception.py) against pytorch-fid's own network with random weights.

pytorch-fid builds its network from torchvision's Inception modules and loads the released weights from the web;
here its loader is replaced by one that keeps the freshly built network, whose weights and BatchNorm running
statistics are then randomized and saved as a state dict in pytorch-fid's key layout. The fast tests compare the
input resize and single blocks; the slow ones the whole network through the command line's main, and FID.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dcgan_jax import errors
#CLI
from dcgan_jax import metrics
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


def test_state_dict_layout_is_pytorch_fids(reference):
  expected = {k: tuple(v.shape) for k, v in reference.state.items()
              if not k.startswith('fc.') and not k.endswith('num_batches_tracked')}
  assert {k: shape for k, (_, shape) in inception.state_dict_layout().items()} == expected
  assert len(expected) == 470
