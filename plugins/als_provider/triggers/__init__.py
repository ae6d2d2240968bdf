"""Triggers of the ALS provider."""
