"""The logio benchmark harness (not tests): ``python -m bench``; see ``__main__``."""
