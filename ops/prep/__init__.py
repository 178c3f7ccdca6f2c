"""Preparation: media (ffmpeg), annotation parsers and writers, the synthetic dataset."""
