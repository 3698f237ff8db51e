"""Staging directives and their backends."""
