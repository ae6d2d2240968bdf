"""The ALS provider: hooks, operators, triggers and sensors for Globus, Globus Compute, SFAPI and SciCat."""
