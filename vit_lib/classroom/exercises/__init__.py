"""Automatic checks for the notebooks' exercises: one module per lesson."""
