"""The command-line programs: `train` (behind `main.py`); each a thin shell over the library."""
