"""Finalize: filters, the expression-geometry check and leak-free splits -> catalog.final."""
