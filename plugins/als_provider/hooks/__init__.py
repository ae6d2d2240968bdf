"""Hooks of the ALS provider."""
