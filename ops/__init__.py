"""Data, sampling, transforms and the train/test engine of videorec."""
