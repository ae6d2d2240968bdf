"""Sensors of the ALS provider."""
