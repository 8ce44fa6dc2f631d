"""The auxiliary classification loss of class-conditional GANs (`config.class_loss_weight`): the cross-entropy of
the projection discriminator's class scores, D on the real batch, G on the fakes, against their labels."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
import dcgan_jax
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax import losses
from dcgan_jax import models
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import train_state


def test_class_loss_is_the_mean_softmax_cross_entropy():
  logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
  labels = jnp.array([0, 2], jnp.int32)
  expected = np.mean([np.log(np.exp(2) + 2) - 2, np.log(1 + np.e + np.exp(3)) - 3])
  np.testing.assert_allclose(float(losses.class_loss(logits, labels)), expected, rtol=1e-6)
  np.testing.assert_allclose(float(losses.class_loss(jnp.zeros((4, 10)), jnp.arange(4))), np.log(10), rtol=1e-6)


def test_a_conditional_discriminator_sows_the_projection_score_of_every_class():
  d = models.MLPDiscriminator(features=(2,), activation='relu', num_classes=3)
  images = jnp.array([[[[1.0], [2.0]]], [[[3.0], [-1.0]]]])  # h = relu(x): (1, 2) and (3, 0).
  params = {
      'Dense_0': {'kernel': jnp.eye(2), 'bias': jnp.zeros(2)},
      'Dense_1': {'kernel': jnp.array([[0.5], [-1.0]]), 'bias': jnp.array([0.25])},
      'label_projection': {'embedding': jnp.array([[1.0, 1.0], [0.0, 0.0], [2.0, -3.0]])},
  }
  logits, sown = d.apply({'params': params}, images, train=False, labels=jnp.array([2, 0]),
                         mutable=['intermediates'])
  np.testing.assert_array_equal(np.asarray(logits), [-5.25, 4.75])  # psi(h) + <e_y, h>, as before.
  # <e_c, h> for c = 0, 1, 2: image 0: 3, 0, -4; image 1: 3, 0, 6.
  np.testing.assert_array_equal(np.asarray(sown['intermediates']['class_logits'][0]), [[3, 0, -4], [3, 0, 6]])


def _config(weight):
  config = conftest.tiny_config()
  config.num_classes, config.class_loss_weight = 3, weight
  return config


def _batch():
  images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1.0, maxval=1.0)
  return {'image': images, 'label': jnp.arange(8, dtype=jnp.int32) % 3}


def test_off_means_no_state_field_and_no_class_metrics():
  state = train_state.create_train_state(_config(0.0), jax.random.key(0))
  assert state.class_loss_weight is None
  _, metrics = jax.jit(train.train_step)(state, _batch())
  assert 'd_class_loss' not in metrics and 'g_class_loss' not in metrics


def test_the_losses_add_the_weighted_class_losses_and_the_updates_are_otherwise_the_same():
  state = train_state.create_train_state(_config(0.5), jax.random.key(0))
  assert float(state.class_loss_weight) == 0.5
  plain_state = state.replace(class_loss_weight=None)
  for update in (train.d_step, train.g_step):  # One side at a time: the same network on the other side.
    step = jax.jit(update)
    new, metrics = step(state, _batch())
    plain_new, plain = step(plain_state, _batch())
    name = 'd' if update is train.d_step else 'g'
    # The GAN part is the plain one, plus 0.5 x the cross-entropy (D: of the real batch; G: of the fakes).
    assert float(metrics[f'{name}_class_loss']) > 0.1
    np.testing.assert_allclose(float(metrics[f'{name}_loss']),
                               float(plain[f'{name}_loss']) + 0.5 * float(metrics[f'{name}_class_loss']), rtol=1e-5)
    # And the update differs: the class term has a gradient.
    params = 'd_params' if name == 'd' else 'g_params'
    flat = lambda tree: np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])
    assert not np.allclose(flat(getattr(new, params)), flat(getattr(plain_new, params)))
    assert set(metrics) - set(plain) == {f'{name}_class_loss'}


def test_the_class_loss_trains_d_to_classify_the_real_batch():
  config = _config(1.0)
  config.d_optimizer.learning_rate = 1e-3
  state = train_state.create_train_state(config, jax.random.key(0))
  step = jax.jit(train.d_step)
  first = None
  for _ in range(30):
    state, metrics = step(state, _batch())
    first = float(metrics['d_class_loss']) if first is None else first
  # Eight fixed images and their labels: D fits them (from ln 3 ~ 1.10).
  assert first == pytest.approx(np.log(3), abs=0.3) and float(metrics['d_class_loss']) < 0.2 * first


def test_a_discriminator_without_class_scores_is_one_line():
  class PlainD(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool, labels=None):
      del labels
      return nn.Dense(1)(x.reshape(x.shape[0], -1))

  state = train_state.create_train_state(_config(1.0), jax.random.key(0), discriminator=PlainD())
  with pytest.raises(ValueError, match=r"^class_loss_weight > 0: the discriminator \(PlainD\) sows no "
                                       r"'class_logits'; use a projection discriminator"):
    train.train_step(state, _batch())


def test_the_api_refuses_the_loss_without_classes_in_one_line():
  config = conftest.tiny_config()
  config.class_loss_weight = 1.0
  with pytest.raises(ValueError, match=r'^config.class_loss_weight=1.0 with num_classes=0: the classification loss '
                                       r'needs classes; set config.num_classes'):
    train_state.create_train_state(config, jax.random.key(0))


def test_g_is_trained_toward_the_labels_it_was_asked_for():
  """G's class loss equals the cross-entropy of D's class scores of the fakes against the fake labels the step
  draws (`steps.sample_fake_labels` from the update's noise key), not against the real batch's labels."""
  state = train_state.create_train_state(_config(1.0), jax.random.key(0))
  batch = _batch()
  _, metrics = jax.jit(train.g_step)(state, batch)
  z_key = jax.random.split(jax.random.fold_in(state.rng, state.step), 4)[0]  # Update 0's noise key.
  fake_labels = steps.sample_fake_labels(z_key, 8, 3)
  z = steps.sample_noise(z_key, (8, state.latent_dim), state.noise)
  fake, _ = state.generator.apply({'params': state.g_params, 'batch_stats': state.g_batch_stats}, z, train=True,
                                  mutable=['batch_stats'], labels=fake_labels)
  _, sown = state.discriminator.apply({'params': state.d_params, 'batch_stats': state.d_batch_stats}, fake,
                                      train=True, labels=fake_labels, mutable=['batch_stats', 'intermediates'])
  classes = sown['intermediates']['class_logits'][0]
  np.testing.assert_allclose(float(metrics['g_class_loss']), float(losses.class_loss(classes, fake_labels)),
                             rtol=1e-5)
  assert not np.isclose(float(losses.class_loss(classes, fake_labels)),
                        float(losses.class_loss(classes, batch['label'])), rtol=1e-3)


def test_validation_one_line_per_bad_value():
  config = _config(-1.0)
  with pytest.raises(errors.ConfigError, match=r'config.class_loss_weight=-1.0: must be a finite number >= 0'):
    config_validation.validate(config)
  config = conftest.tiny_config()
  config.class_loss_weight = 1.0
  with pytest.raises(errors.ConfigError, match=r'config.class_loss_weight=1.0 with num_classes=0: the '
                                                r'classification loss needs classes'):
    config_validation.validate(config)


def test_population_sweeps_the_weight_under_vmap():
  population = dcgan_jax.create_population(_config(1.0), [0, 0], class_loss_weight=[0.5, 2.0])
  _, metrics = jax.jit(jax.vmap(train.d_step, in_axes=(0, None)))(population, _batch())
  for i, weight in enumerate([0.5, 2.0]):
    single = train_state.create_train_state(_config(weight), jax.random.key(0))
    _, m = jax.jit(train.d_step)(single, _batch())
    np.testing.assert_allclose(float(metrics['d_loss'][i]), float(m['d_loss']), rtol=1e-4)
  with pytest.raises(ValueError, match=r'class_loss_weight=\[0.0, 1.0\] switches its option off'):
    dcgan_jax.create_population(_config(1.0), [0, 1], class_loss_weight=[0.0, 1.0])
