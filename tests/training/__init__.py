"""Tests of the training package (plain PyTorch, no database)."""
