"""The engine: training, testing, inference, optimisers, checkpoints, distributed helpers, run settings."""
