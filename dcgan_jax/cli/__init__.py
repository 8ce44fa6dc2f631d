"""The command-line programs, each a thin shell over the library: `train` (behind `main.py`), `sample`,
`classifier`, `monitor` (also installed as `dcgan-train`, `dcgan-sample`, `dcgan-classifier`, `dcgan-monitor`).
`python -m dcgan_jax.inception` and `python -m dcgan_jax.fid` stay where the Inception FID protocol names them."""
