"""Studies: the experiments that measure the shipped models and the data, and choose between
options (`train/` builds and evaluates the models). Each module's docstring gives its command."""
