"""Evaluation: feature networks and the metrics computed on their features.

* `inception`: a Flax port of the InceptionV3 variant that pytorch-fid uses for paper-comparable FID and KID
  (pool3 features, 2048-d), its weight loading and conversion, and batched feature extraction.

The MNIST-classifier FID (`dcgan_jax.classifier`, `dcgan_jax.metrics`, `dcgan_jax.evaluation`) will move here too.
"""
