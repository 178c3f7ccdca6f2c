"""Evaluation: score files, fusion, metrics, early exit."""
