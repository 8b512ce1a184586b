"""slim-harness: data, models, training, evaluation, sweeps, tables and the command line."""
