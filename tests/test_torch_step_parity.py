"""Our `train_step` is the PyTorch DCGAN training step, update for update: from the same weights, on the same real
batches and the same noise, a PyTorch implementation of the MNIST DCGAN's step (one D update on the real batch and
the detached fake batch, then one G update through the updated D on the same fakes; BCE with logits; two Adams;
BatchNorm on batch statistics) reaches the same losses and the same weights. So the sample-quality gap that
`benchmarks/quality.py` measures against the PyTorch reference comes from what differs there — the initial weights,
the padding alignment of 'SAME' convolutions and the random streams — not from the update rule.

The PyTorch side pads as TF/JAX 'SAME' does (one more row/column after than before) and runs the transposed
convolutions as lax does (zero-interleaved input, padded, correlated with the unflipped kernel).
"""

import math

import jax
import numpy as np
import torch  # In requirements-test.txt.

import conftest
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import train_state

F = torch.nn.functional


def _t(array) -> 'torch.Tensor':
  return torch.from_numpy(np.array(array, np.float32)).requires_grad_(True)


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
  total = max((math.ceil(size / s) - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def _transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  """The padding of the zero-interleaved input that lax.conv_transpose uses for 'SAME' / 'VALID'."""
  pad_len = k + s - 2 + (max(k - s, 0) if padding == 'VALID' else 0)
  pad_a = k - 1 if padding == 'VALID' or s > k - 1 else math.ceil(pad_len / 2)
  return pad_a, pad_len - pad_a


def _conv(x, kernel, stride, padding, bias=None):
  k = kernel.shape[0]
  pads = (0, 0) if padding == 'VALID' else _same_pads(x.shape[-1], k, stride)
  x = F.pad(x, (pads[0], pads[1], pads[0], pads[1]))
  return F.conv2d(x, kernel.permute(3, 2, 0, 1), bias, stride=stride)


def _conv_transpose(x, kernel, stride, padding, bias=None):
  k = kernel.shape[0]
  b, c, h, w = x.shape
  dilated = x.new_zeros(b, c, (h - 1) * stride + 1, (w - 1) * stride + 1)
  dilated[:, :, ::stride, ::stride] = x
  pa, pb = _transpose_pads(k, stride, padding)
  return F.conv2d(F.pad(dilated, (pa, pb, pa, pb)), kernel.permute(3, 2, 0, 1), bias)


def _bn(x, p):
  return F.batch_norm(x, None, None, p['scale'], p['bias'], training=True, eps=1e-3)


def _generator(g, z):
  x = z.reshape(z.shape[0], -1, 1, 1)
  x = F.leaky_relu(_bn(_conv_transpose(x, g['ConvTranspose_0']['kernel'], 1, 'VALID'), g['BatchNorm_0']), 0.2)
  x = F.leaky_relu(_bn(_conv_transpose(x, g['ConvTranspose_1']['kernel'], 2, 'SAME'), g['BatchNorm_1']), 0.2)
  return torch.tanh(_conv_transpose(x, g['ConvTranspose_2']['kernel'], 2, 'SAME', g['ConvTranspose_2']['bias']))


def _discriminator(d, x):
  x = F.leaky_relu(_bn(_conv(x, d['Conv_0']['kernel'], 2, 'SAME'), d['BatchNorm_0']), 0.2)
  x = F.leaky_relu(_bn(_conv(x, d['Conv_1']['kernel'], 2, 'SAME'), d['BatchNorm_1']), 0.2)
  return _conv(x, d['Conv_2']['kernel'], 1, 'VALID', d['Conv_2']['bias']).reshape(-1)


def _torch_params(tree):
  return {layer: {name: _t(value) for name, value in leaves.items()} for layer, leaves in tree.items()}


def _torch_steps(state, images, noises):
  """The PyTorch DCGAN example's step, over our initial weights, real batches and noise."""
  g, d = _torch_params(jax.device_get(state.g_params)), _torch_params(jax.device_get(state.d_params))
  leaves = lambda tree: [p for layer in tree.values() for p in layer.values()]
  g_opt = torch.optim.Adam(leaves(g), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
  d_opt = torch.optim.Adam(leaves(d), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
  bce = F.binary_cross_entropy_with_logits
  losses = []
  for real, z in zip(images, noises):
    real = torch.from_numpy(np.asarray(real).transpose(0, 3, 1, 2).copy())
    d_opt.zero_grad()
    fake = _generator(g, torch.from_numpy(np.array(z)))  # A writable copy of the jax array.
    real_logits, fake_logits = _discriminator(d, real), _discriminator(d, fake.detach())
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    d_loss.backward()
    d_opt.step()
    g_opt.zero_grad()
    fake_logits = _discriminator(d, fake)
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    g_loss.backward()
    g_opt.step()
    losses.append((d_loss.item(), g_loss.item()))
  return g, d, losses


def test_train_step_equals_the_pytorch_dcgan_step_from_the_same_weights():
  config = conftest.tiny_config()
  state = train_state.create_train_state(config, jax.random.key(0))
  rng = np.random.default_rng(0)
  images = [rng.uniform(-1, 1, (config.batch_size, 28, 28, 1)).astype(np.float32) for _ in range(3)]
  # The noise of step s's first update: `fold_in(state.rng, s)`, split in four, the first key (steps.py).
  noises = [steps.sample_noise(jax.random.split(jax.random.fold_in(state.rng, s), 4)[0],
                               (config.batch_size, config.latent_dim), config.noise) for s in range(3)]
  g, d, torch_losses = _torch_steps(state, images, noises)
  step = jax.jit(train.train_step)
  ours = []
  for real in images:
    state, metrics = step(state, {'image': real})
    ours.append((float(metrics['d_loss']), float(metrics['g_loss'])))
  np.testing.assert_allclose(ours, torch_losses, rtol=1e-4)
  for tree, params in ((g, state.g_params), (d, state.d_params)):
    for layer, leaves in tree.items():
      for name, value in leaves.items():
        # Adam's first steps move each weight by about the learning rate whatever the gradient's size: 2e-4 x 3.
        np.testing.assert_allclose(np.asarray(params[layer][name]), value.detach().numpy(), rtol=0, atol=2e-6,
                                   err_msg=f'{layer}/{name}')
