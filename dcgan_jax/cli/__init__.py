"""The command-line programs, each a thin shell over the library: `train` (behind `main.py`), `classifier`,
`monitor` (also installed as `dcgan-train`, `dcgan-classifier`, `dcgan-monitor`)."""
