"""Tests for logio."""
