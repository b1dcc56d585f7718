"""The Python publisher: a logging handler and the logio command; no Twisted needed."""
