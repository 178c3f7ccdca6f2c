"""Applications on top of the engine: streaming, single-video prediction, the demo."""
