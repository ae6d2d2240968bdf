"""Operators of the ALS provider."""
