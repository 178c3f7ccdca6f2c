"""Helpers every stage uses: user errors, atomic file writes, run logs and progress bars."""
