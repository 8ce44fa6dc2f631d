"""Class-conditional GANs (`config.num_classes` > 0): the label embedding and the projection discriminator, the
step with real and fake labels, and `generate` / `discriminate` with labels."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

import conftest
import dcgan_jax
from dcgan_jax.configs import mnist
from dcgan_jax.data import input_pipeline
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax import models
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax.trainer import loop


def _counts(config, batch=2):
  """(G, D) parameter counts of `config`'s networks (shapes only)."""
  g, d = models.build(config)
  kwargs = {'labels': jnp.zeros((batch,), jnp.int32)} if config.num_classes else {}
  size = config.data.image_size
  gv = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((batch, config.latent_dim)), train=False,
                                     **kwargs))
  dv = jax.eval_shape(lambda: d.init(jax.random.key(0), jnp.zeros((batch, size, size, config.data.channels)),
                                     train=False, **kwargs))
  return models.count_params(gv['params']), models.count_params(dv['params'])


def test_mnist_conditional_parameter_counts():
  config = mnist.get_config()
  g0, d0 = _counts(config)
  config.num_classes = 10
  g, d = _counts(config)
  assert (g0, d0) == (2_077_569, 835_713)  # The unconditional MNIST DCGAN, unchanged.
  # G: the embedding 10 x 100, and the first transposed conv reads z and the embedding: 7*7*(100+100)*256.
  assert g == g0 + 10 * 100 + 7 * 7 * 100 * 256 == 3_332_969
  # D: one projection vector per class over the flattened 7x7x256 features.
  assert d == d0 + 10 * 7 * 7 * 256 == 961_153


@pytest.mark.parametrize('family,fields', [('dcgan', {'start_size': 7, 'features': (8, 4), 'kernel_size': 3}),
                                           ('upsample', {'start_size': 7, 'features': (8, 4), 'kernel_size': 3}),
                                           ('mlp', {'features': (6,)})])
def test_every_generator_family_takes_labels(config, family, fields):
  config.num_classes = 3
  config.model.generator = models.network_config('generator', family, **fields)
  g = models.build_network(config, 'generator')
  z, labels = jnp.ones((4, config.latent_dim)), jnp.array([0, 1, 2, 1], jnp.int32)
  variables = g.init(jax.random.key(0), z, train=False, labels=labels)
  assert variables['params']['label_embedding']['embedding'].shape == (3, config.latent_dim)
  images = g.apply(variables, z, train=False, labels=labels)
  assert images.shape == (4, 28, 28, 1)
  # Same z, labels 1 and 1: the same image; labels 0 and 2: different ones.
  np.testing.assert_array_equal(images[1], images[3])
  assert float(jnp.max(jnp.abs(images[0] - images[2]))) > 0.0


def test_conditional_batchnorm_adds_a_scale_and_shift_per_class_and_hidden_layer():
  config = mnist.get_config()
  config.num_classes = 10
  config.model.generator.conditional_batchnorm = True
  g, d = _counts(config)
  # 2 * width per class after each hidden BatchNorm (widths 256 and 128); D unchanged.
  assert (g, d) == (3_332_969 + 10 * 2 * (256 + 128), 961_153) == (3_340_649, 961_153)


def test_conditional_batchnorm_starts_as_the_plain_network_and_modulates_each_class(config):
  config.num_classes = 3
  plain = models.build_network(config, 'generator')
  config.model.generator.conditional_batchnorm = True
  g = models.build_network(config, 'generator')
  z, labels = jax.random.uniform(jax.random.key(1), (4, config.latent_dim)), jnp.array([0, 1, 2, 1], jnp.int32)
  variables = g.init(jax.random.key(0), z, train=False, labels=labels)
  tables = {k: v['embedding'] for k, v in variables['params'].items() if k.startswith('label_batchnorm')}
  assert {k: t.shape for k, t in tables.items()} == {'label_batchnorm_0': (3, 16), 'label_batchnorm_1': (3, 8)}
  assert all(float(jnp.max(jnp.abs(t))) == 0.0 for t in tables.values())  # Zero at initialization ...
  params = {k: v for k, v in variables['params'].items() if not k.startswith('label_batchnorm')}
  for training in (False, True):  # ... so the network computes what the plain one does, in both modes.
    kwargs = {'mutable': ['batch_stats']} if training else {}
    ours = g.apply(variables, z, train=training, labels=labels, **kwargs)
    theirs = plain.apply({**variables, 'params': params}, z, train=training, labels=labels, **kwargs)
    jax.tree.map(np.testing.assert_array_equal, ours, theirs)
  # Class 2's shift of layer 1's channels changes class 2's images only; gamma = -1 zeroes the layer: the image
  # of the generator whose last hidden features are all 0 (tanh of the output bias, 0 here).
  shifted = jax.tree.map(lambda x: x, variables)
  shifted['params']['label_batchnorm_1']['embedding'] = tables['label_batchnorm_1'].at[2, 4:].set(0.5)
  before, after = g.apply(variables, z, train=False, labels=labels), g.apply(shifted, z, train=False, labels=labels)
  np.testing.assert_array_equal(after[:2], before[:2])
  np.testing.assert_array_equal(after[3], before[3])
  assert float(jnp.max(jnp.abs(after[2] - before[2]))) > 0.01
  silenced = jax.tree.map(lambda x: x, variables)
  silenced['params']['label_batchnorm_1']['embedding'] = tables['label_batchnorm_1'].at[1, :4].set(-1.0)
  out = g.apply(silenced, z, train=False, labels=labels)
  np.testing.assert_allclose(out[1], jnp.zeros_like(out[1]), atol=1e-7)


def test_conditional_batchnorm_without_classes_is_a_config_error(config):
  config.model.generator.conditional_batchnorm = True
  with pytest.raises(errors.ConfigError, match=r'conditional_batchnorm=True with num_classes=0: it needs classes'):
    config_validation.validate(config)
  with pytest.raises(ValueError, match=r'^conditional_batchnorm=True with num_classes=0: it needs classes'):
    train_state.create_train_state(config, jax.random.key(0))  # Through the API, where nothing validates.


def test_projection_term_is_exact_on_a_hand_made_case():
  d = models.MLPDiscriminator(features=(2,), activation='relu', num_classes=3)
  images = jnp.array([[[[1.0], [2.0]]], [[[3.0], [-1.0]]]])  # [2, 1, 2, 1]: flattened (1, 2) and (3, -1).
  labels = jnp.array([2, 0], jnp.int32)
  params = {
      'Dense_0': {'kernel': jnp.array([[1.0, 0.0], [0.0, 1.0]]), 'bias': jnp.zeros(2)},  # h = relu(x).
      'Dense_1': {'kernel': jnp.array([[0.5], [-1.0]]), 'bias': jnp.array([0.25])},  # psi(h) = h . w + b.
      'label_projection': {'embedding': jnp.array([[1.0, 1.0], [0.0, 0.0], [2.0, -3.0]])},
  }
  logits = d.apply({'params': params}, images, train=False, labels=labels)
  # Image 0: h = (1, 2), psi = 0.5 - 2 + 0.25 = -1.25, <e_2, h> = 2 - 6 = -4.
  # Image 1: h = (3, 0), psi = 1.5 + 0.25 = 1.75, <e_0, h> = 3.
  np.testing.assert_array_equal(np.asarray(logits), [-5.25, 4.75])


def test_conv_discriminator_projects_the_flattened_last_feature_map(config):
  config.num_classes = 4
  d = models.build_network(config, 'discriminator')
  images, labels = jnp.ones((2, 28, 28, 1)), jnp.array([3, 3], jnp.int32)
  variables = d.init(jax.random.key(0), images, train=False, labels=labels)
  assert variables['params']['label_projection']['embedding'].shape == (4, 7 * 7 * 8)
  # Zeroing class 3's projection vector leaves psi(h) alone: the logit of the unconditional network.
  zeroed = jax.tree.map(lambda x: x, variables)
  zeroed['params']['label_projection']['embedding'] = jnp.zeros((4, 7 * 7 * 8))
  with_zero = d.apply(zeroed, images, train=False, labels=labels)
  config.num_classes = 0
  plain = models.build_network(config, 'discriminator')
  unconditional = {'params': {k: v for k, v in variables['params'].items() if k != 'label_projection'},
                   'batch_stats': variables['batch_stats']}
  np.testing.assert_allclose(with_zero, plain.apply(unconditional, images, train=False), rtol=1e-6)


def test_labels_must_match_the_module(config):
  g, _ = models.build(config)
  z = jnp.ones((2, config.latent_dim))
  with pytest.raises(ValueError, match=r'^the generator is unconditional \(num_classes=0\): labels must be None'):
    g.init(jax.random.key(0), z, train=False, labels=jnp.zeros((2,), jnp.int32))
  config.num_classes = 5
  g, _ = models.build(config)
  with pytest.raises(ValueError, match=r'^the generator is class-conditional \(num_classes=5\): pass labels, '
                                       r'int32 \[B\] in 0..4\n'):
    g.init(jax.random.key(0), z, train=False)


def _conditional_state(config, num_classes=3):
  config.num_classes = num_classes
  return train_state.create_train_state(config, jax.random.key(0))


def _batch(seed=1, batch=8, num_classes=3):
  images = jax.random.uniform(jax.random.key(seed), (batch, 28, 28, 1), minval=-1.0, maxval=1.0)
  return {'image': images, 'label': jnp.arange(batch, dtype=jnp.int32) % num_classes}


def test_generate_requires_labels_for_a_conditional_state(config):
  state = _conditional_state(config)
  z = jnp.ones((2, config.latent_dim))
  with pytest.raises(errors.UserError) as e:
    dcgan_jax.generate(state, z)
  assert str(e.value) == ('this state is class-conditional (num_classes=3): pass labels, int32 [N] in 0..2, one per '
                          'noise vector')
  with pytest.raises(errors.UserError, match=r'^labels must be int32 \[2\] \(one per noise vector\), got shape '
                                             r'\(3,\)$'):
    dcgan_jax.generate(state, z, jnp.zeros((3,), jnp.int32))
  images = dcgan_jax.generate(state, z, jnp.array([0, 2], jnp.int32))
  assert images.shape == (2, 28, 28, 1)
  assert dcgan_jax.discriminate(state, images, jnp.array([0, 2])).shape == (2,)


def test_generate_refuses_labels_for_an_unconditional_state(config):
  state = train_state.create_train_state(config, jax.random.key(0))
  with pytest.raises(errors.UserError, match=r'^labels given, but this state is unconditional'):
    dcgan_jax.generate(state, jnp.ones((2, config.latent_dim)), jnp.zeros((2,), jnp.int32))


def test_train_step_requires_labels_for_a_conditional_state(config):
  state = _conditional_state(config)
  with pytest.raises(errors.UserError) as e:
    dcgan_jax.train_step(state, {'image': _batch()['image']})
  assert str(e.value) == ("this state is class-conditional (num_classes=3): the batch needs 'label', int32 [B] in "
                          "0..2, beside 'image'")


def test_fake_labels_are_uniform_and_depend_only_on_the_key():
  key = jax.random.key(7)
  a = steps.sample_fake_labels(key, 3000, 3)
  np.testing.assert_array_equal(a, steps.sample_fake_labels(key, 3000, 3))
  assert a.dtype == jnp.int32 and int(a.min()) == 0 and int(a.max()) == 2
  counts = np.bincount(np.asarray(a), minlength=3)
  assert np.all(np.abs(counts - 1000) < 100)
  assert not np.array_equal(a, steps.sample_fake_labels(jax.random.key(8), 3000, 3))


def test_conditional_steps_are_deterministic_and_use_the_real_labels(config):
  state = _conditional_state(config)
  step = jax.jit(dcgan_jax.train_step)
  batch = _batch()
  s1, m1 = step(state, batch)
  s2, m2 = step(state, batch)
  for a, b in zip(jax.tree.leaves((s1, m1)), jax.tree.leaves((s2, m2))):
    np.testing.assert_array_equal(a, b)
  s3, m3 = step(state, {**batch, 'label': (batch['label'] + 1) % 3})
  # Other real labels move other rows of D's projection: the real labels reach the step.
  np.testing.assert_array_equal(s3.step, s1.step)
  assert not np.array_equal(s3.d_params['label_projection']['embedding'],
                            s1.d_params['label_projection']['embedding'])
  # d_step and g_step take the labels too.
  assert int(jax.jit(dcgan_jax.d_step)(state, batch)[0].d_updates) == 1
  assert int(jax.jit(dcgan_jax.g_step)(state, batch)[0].g_updates) == 1


def test_the_unconditional_step_is_traced_as_before(config):
  # No label draw, no label input: only the conditional step draws integers (its fake labels).
  state = train_state.create_train_state(config, jax.random.key(0))
  batch = {'image': _batch()['image']}
  text = str(jax.make_jaxpr(dcgan_jax.train_step)(state, batch))
  conditional = str(jax.make_jaxpr(dcgan_jax.train_step)(_conditional_state(conftest.tiny_config()), _batch()))
  assert ('randint' in text, 'randint' in conditional) == (False, True)


def test_vmap_over_a_conditional_population(config):
  config.num_classes = 3
  population = dcgan_jax.create_population(config, [0, 1])
  batch = _batch()
  new, metrics = jax.jit(jax.vmap(dcgan_jax.train_step, in_axes=(0, None)))(population, batch)
  assert metrics['d_loss'].shape == (2,)
  assert new.num_classes == 3


# Labels through the data pipeline and the training loop.


def _labelled_idx(directory, labels, stem='t10k'):
  """IDX images whose pixels all equal their label (so a batch shows which labels it carries) and the labels file."""
  import gzip  # pylint: disable=g-import-not-at-top
  import struct  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels, np.uint8)
  images = np.repeat(labels[:, None, None], 28, axis=1).repeat(28, axis=2)
  with gzip.open(directory / f'{stem}-images-idx3-ubyte.gz', 'wb') as f:
    f.write(struct.pack('>BBBBIII', 0, 0, 8, 3, *images.shape) + images.tobytes())
  with gzip.open(directory / f'{stem}-labels-idx1-ubyte.gz', 'wb') as f:
    f.write(struct.pack('>BBBBI', 0, 0, 8, 1, labels.shape[0]) + labels.tobytes())
  return directory


def _idx_config(path, num_classes):
  config = conftest.tiny_config()
  config.data.source, config.data.path, config.data.split = 'idx', str(path), 'test'
  config.num_classes = num_classes
  return config


def test_labels_are_batched_with_their_images_in_the_same_order(tmp_path):
  labels = np.arange(40) % 5
  config = _idx_config(_labelled_idx(tmp_path, labels), 5)
  images, read, names = input_pipeline.load_labelled(config.data, 5)
  np.testing.assert_array_equal(read, labels)
  assert names == ('0', '1', '2', '3', '4')
  batcher = input_pipeline.EpochBatcher(images, 8, seed=3, labels=read)
  for step in (0, 4, 5, 13):  # Across epochs (5 steps each).
    np.testing.assert_array_equal(batcher.batch(step)[:, 0, 0, 0], batcher.batch_labels(step))
    np.testing.assert_array_equal(batcher.batch_labels(step), read[batcher.indices(step)])
  # A fresh batcher (a resumed run) gives the same labels at the same step.
  again = input_pipeline.EpochBatcher(images, 8, seed=3, labels=read)
  np.testing.assert_array_equal(again.batch_labels(13), batcher.batch_labels(13))


def test_labels_beyond_num_classes_are_one_line(tmp_path):
  config = _idx_config(_labelled_idx(tmp_path, np.arange(12) % 4), 3)
  with pytest.raises(errors.DataError, match=r'has labels 0..3, outside 0..2 \(config.num_classes=3\); set '
                                             r'--config.num_classes=4$'):
    input_pipeline.load_labelled(config.data, 3)


def test_tfds_labels_come_from_its_label_feature():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from dcgan_jax.eval import classifier  # pylint: disable=g-import-not-at-top
  config = conftest.tiny_config()
  config.data.source = 'tfds'
  with tfds.testing.mock_data(num_examples=12):
    images, labels, names = input_pipeline.load_labelled(config.data, 10)
    np.testing.assert_array_equal(labels, classifier.load_labels(config.data))  # The classifier's, in order.
  assert images.shape == (12, 28, 28, 1) and labels.shape == (12,) and labels.dtype == np.int32
  assert names == tuple(str(k) for k in range(10))


def _class_folder(root, classes=('paper', 'rock'), per_class=8):
  for k, name in enumerate(classes):
    (root / name).mkdir(parents=True)
    for i in range(per_class):
      Image.fromarray(np.full((28, 28), 40 * k + i, np.uint8)).save(root / name / f'{i}.png')
  return root


def test_folder_classes_are_its_sorted_subdirectories(tmp_path):
  root = _class_folder(tmp_path / 'data', classes=('rock', 'paper', 'scissors'), per_class=2)
  config = conftest.tiny_config()
  config.data.source, config.data.path = 'folder', str(root)
  images, labels, names = input_pipeline.load_labelled(config.data, 3)
  assert names == ('paper', 'rock', 'scissors')
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(images[:, 0, 0, 0], [40, 41, 0, 1, 80, 81])  # Written as rock 0.., paper 40..
  with pytest.raises(errors.DataError, match=r'has 3 class subdirectories \(paper, rock, scissors\), but '
                                             r'config.num_classes=2; set --config.num_classes=3$'):
    input_pipeline.load_labelled(config.data, 2)
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / 'stray.png')
  with pytest.raises(errors.DataError, match='stray.png lies directly in .*, outside a class subdirectory'):
    input_pipeline.load_labelled(config.data, 3)


def _final_params(state):
  return jax.tree.leaves((state.g_params, state.d_params))


def test_a_conditional_run_resumes_exactly_with_labels_on_the_host_or_the_device(tmp_path):
  data = _labelled_idx(tmp_path, np.arange(48) % 3)
  config = _idx_config(data, 3)
  config.num_train_steps, config.checkpoint_every_steps, config.log_every_steps = 4, 2, 2
  straight = loop.train_and_evaluate(config, str(tmp_path / 'straight'))  # Labels on the device.
  config.data.max_device_bytes = 0  # Labels sent with each batch from the host.
  config.num_train_steps = 2
  loop.train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.num_train_steps = 4
  resumed = loop.train_and_evaluate(config, str(tmp_path / 'resumed'), allow_config_change=True)
  for a, b in zip(_final_params(straight), _final_params(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert json.loads((tmp_path / 'straight' / 'classes.json').read_text()) == ['0', '1', '2']
  # The sample grid has one row per class: 3 rows of 4 // 3 = 1 image (num_samples 4).
  grid = np.asarray(Image.open(tmp_path / 'straight' / 'samples' / 'step_0000004.png'))
  assert grid.shape[0] > 2 * grid.shape[1]


def test_class_accuracy_on_a_hand_made_classifier_case():
  # An untrained classifier is still a fixed function: its own predictions on these images are the classes it
  # "recognises"; asking for them scores 1, asking for another class on 3 of 8 images scores 5/8.
  from dcgan_jax.eval import classifier  # pylint: disable=g-import-not-at-top
  from dcgan_jax.eval import evaluation  # pylint: disable=g-import-not-at-top
  variables = jax.jit(classifier.CNN(10).init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  real = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1)).astype(np.uint8)
  generated = input_pipeline.to_float(real, (-1.0, 1.0))
  predicted = classifier.predict_and_features(variables, real)[0]
  evaluator = evaluation.Evaluator(variables, real, None, num_classes=10)
  scores = evaluator.evaluate(generated, predicted)
  assert tuple(scores) == evaluation.KEYS + ('class_accuracy', 'class_accuracy_min')
  assert scores['class_accuracy'] == 1.0 and scores['class_accuracy_min'] == 1.0
  wrong = predicted.copy()
  wrong[:3] = (wrong[:3] + 1) % 10
  scores = evaluator.evaluate(generated, wrong)
  assert scores['class_accuracy'] == 5 / 8
  assert scores['class_accuracy_min'] == min(evaluation.per_class_accuracy(predicted, wrong).values())
  assert tuple(evaluator.evaluate(generated)) == evaluation.KEYS  # Unconditional: no class_accuracy.
  assert evaluation.class_accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5


def test_per_class_accuracy_counts_each_asked_class_on_its_own():
  from dcgan_jax.eval import evaluation  # pylint: disable=g-import-not-at-top
  # Asked: class 0 four times (3 recognised), class 2 twice (1 recognised), class 5 once (recognised).
  requested = [0, 0, 0, 0, 2, 2, 5]
  predicted = [0, 0, 0, 1, 2, 7, 5]
  assert evaluation.per_class_accuracy(predicted, requested) == {0: 0.75, 2: 0.5, 5: 1.0}
  with pytest.raises(ValueError, match='3 predictions for'):
    evaluation.per_class_accuracy([0, 1, 2], [0, 1])


# The sample command on a conditional run of a folder with two classes.


@pytest.fixture(scope='module')
def folder_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('cond')
  data = _class_folder(root / 'data', classes=('rock', 'paper'), per_class=8)
  config = conftest.tiny_config()
  config.data.source, config.data.path = 'folder', str(data)
  config.num_classes, config.num_train_steps = 2, 2
  loop.train_and_evaluate(config, str(root / 'run'))
  return root / 'run'


def test_sample_writes_a_per_class_grid_by_default(folder_run, tmp_path):
  from dcgan_jax import sample  # pylint: disable=g-import-not-at-top
  from dcgan_jax import visualize  # pylint: disable=g-import-not-at-top
  assert json.loads((folder_run / 'classes.json').read_text()) == ['paper', 'rock']
  images = sample.run(str(folder_run), str(tmp_path / 'grid.npy'), num=7)
  assert images.shape == (6, 28, 28, 1)  # 2 classes x 7 // 2 = 3 per class.
  config, state = sample.load(str(folder_run))
  z = train.sample_noise(jax.random.key(0), (6, config.latent_dim), config.noise)
  expected = train.generate(state, z, jnp.array([0, 0, 0, 1, 1, 1]), use_batch_stats=True)
  np.testing.assert_allclose(images, np.asarray(expected), atol=1e-6)
  sample.run(str(folder_run), str(tmp_path / 'grid.png'), num=7)
  grid = np.asarray(Image.open(tmp_path / 'grid.png'))
  assert grid.shape == visualize.make_grid(images, (-1.0, 1.0), 3).shape[:2]  # 2 rows of 3.
  labels, columns = sample.sample_labels(config, 7)
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
  assert columns == 3


def test_the_sample_grid_draws_the_classes_the_data_holds(tmp_path):
  """EMNIST letters hold classes 1..26 of 27: the trainer records class 0 as null, and the sample command's grid
  and interpolation rows skip it (an explicit --label=0 is still allowed)."""
  from dcgan_jax import sample  # pylint: disable=g-import-not-at-top
  loop.write_classes(str(tmp_path), ('0', '1', '2'), present=np.array([1, 2]))
  assert json.loads((tmp_path / 'classes.json').read_text()) == [None, '1', '2']
  assert sample.recorded_classes(str(tmp_path), 3) == ([None, '1', '2'], [1, 2])
  config = mnist.get_config()
  config.num_classes = 3
  labels, columns = sample.sample_labels(config, 7, classes=[1, 2])
  np.testing.assert_array_equal(labels, [1, 1, 1, 2, 2, 2])
  assert columns == 3
  labels, columns = sample.sample_labels(config, 0, rows=3, steps=2, classes=[1, 2])
  np.testing.assert_array_equal(labels, [1, 1, 2, 2, 1, 1])
  assert sample.class_index(str(tmp_path), config, '0') == 0
  # A run without the record (or a stale one of another length): every class, named by its index.
  assert sample.recorded_classes(str(tmp_path / 'none'), 3) == (['0', '1', '2'], [0, 1, 2])


def test_one_class_is_drawn_among_every_class_with_batch_statistics(folder_run):
  """`--label=K` with batch statistics: each image is generated in a batch holding one image of every class (as
  training's fake batches do), then kept; with running averages the batch does not matter and it is drawn alone."""
  from dcgan_jax import sample  # pylint: disable=g-import-not-at-top
  config, state = sample.load(str(folder_run))
  images, _ = sample.generate_samples(state, config, 3, seed=5, label=1, classes=[0, 1])
  rng = jax.random.key(5)
  z = np.asarray(train.sample_noise(rng, (3, config.latent_dim), config.noise))
  mixed_z = np.array(train.sample_noise(jax.random.fold_in(rng, 1), (6, config.latent_dim), config.noise))
  mixed_z[1::2] = z
  expected = train.generate(state, mixed_z, jnp.array([0, 1] * 3), use_batch_stats=True)[1::2]
  np.testing.assert_allclose(images, np.asarray(expected), atol=1e-6)
  alone = train.generate(state, z, jnp.array([1, 1, 1]), use_batch_stats=True)
  assert np.max(np.abs(images - np.asarray(alone))) > 1e-3  # Another batch, other statistics.
  config.model.sample_use_batch_stats = False
  images, _ = sample.generate_samples(state, config, 3, seed=5, label=1, classes=[0, 1])
  np.testing.assert_allclose(images, np.asarray(train.generate(state, z, jnp.array([1, 1, 1]))), atol=1e-6)


def test_sample_label_by_index_and_by_folder_name(folder_run, tmp_path):
  from dcgan_jax import sample  # pylint: disable=g-import-not-at-top
  by_name = sample.run(str(folder_run), str(tmp_path / 'a.npy'), num=4, label='rock')
  by_index = sample.run(str(folder_run), str(tmp_path / 'b.npy'), num=4, label='1')
  np.testing.assert_array_equal(by_name, by_index)
  config, state = sample.load(str(folder_run))
  # Drawn among both classes (test_one_class_is_drawn_among_every_class_with_batch_statistics).
  np.testing.assert_allclose(by_name, sample.generate_samples(state, config, 4, label=1, classes=[0, 1])[0], atol=1e-6)
  paper = sample.run(str(folder_run), str(tmp_path / 'c.npy'), num=4, label='paper')
  assert not np.allclose(paper, by_name)
  with pytest.raises(errors.ConfigError) as e:
    sample.run(str(folder_run), str(tmp_path / 'd.npy'), num=4, label='scissors')
  assert str(e.value) == '--label=scissors: not a class of this run; pass an index in 0..1 or one of paper, rock'
  with pytest.raises(errors.ConfigError, match='^--export: exporting a class-conditional generator is not '
                                               'supported yet; drop --export$'):
    sample.run(str(folder_run), str(tmp_path / 'e.npy'), num=4, export=str(tmp_path / 'g.jax'))
  unconditional = conftest.tiny_config()
  with pytest.raises(errors.ConfigError, match=r'^--label=3: this run is unconditional \(config.num_classes=0\); '
                                               'drop --label$'):
    sample.class_index(str(tmp_path), unconditional, '3')


def test_a_conditional_run_with_the_epoch_blocks_schedule(tmp_path):
  # G-only and D-only steps (rock_paper_scissors_conditional's schedule) take the labels too.
  config = _idx_config(_labelled_idx(tmp_path, np.arange(24) % 3), 3)
  config.schedule, config.num_train_steps = 'epoch_blocks', 6  # 3 steps per epoch: one G block, one D block.
  state = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert (int(state.step), int(state.d_updates), int(state.g_updates)) == (6, 3, 3)
  assert bool(dcgan_jax.all_finite(state))


_FOUR_DEVICES = '''
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
sys.path.insert(0, 'tests')
import conftest
from dcgan_jax import parallel
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax.data import input_pipeline
assert jax.device_count() == 4, jax.devices()
config = conftest.tiny_config()
config.num_classes = 3
state = train_state.create_train_state(config, jax.random.key(0))
sgd = optax.sgd(0.05)
state = state.replace(g_tx=sgd, d_tx=sgd, g_opt_state=sgd.init(state.g_params), d_opt_state=sgd.init(state.d_params))
images = np.asarray(jax.random.randint(jax.random.key(1), (8, 28, 28, 1), 0, 256), np.uint8)
labels = np.arange(8, dtype=np.int32) % 3
one, _ = jax.jit(train.train_step)(state, {'image': input_pipeline.to_float(images), 'label': labels})
mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'data'))
step = parallel.make_parallel_train_step(mesh, True, (-1.0, 1.0), conditional=True)
four, _ = step(state, jax.device_put(images[None], sharding), jax.device_put(labels[None], sharding))
json.dump({name: [np.asarray(x).tolist() for x in jax.tree.leaves((s.g_params, s.d_params))]
           for name, s in (('one', one), ('four', four))}, sys.stdout)
'''


@pytest.mark.slow
def test_four_devices_draw_the_same_fake_labels_as_one():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  proc = subprocess.run([sys.executable, '-c', _FOUR_DEVICES], capture_output=True, text=True,
                        env=conftest.subprocess_env(num_devices=4), cwd=conftest.ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout)
  for want, have in zip(result['one'], result['four']):
    np.testing.assert_allclose(np.asarray(have), np.asarray(want), rtol=2e-4, atol=2e-6)
