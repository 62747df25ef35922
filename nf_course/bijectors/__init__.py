"""Bijectors of the course, one module per family."""
