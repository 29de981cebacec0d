"""Speed measurements of brainmri (not tests): `python -m benchmarks --help`."""
