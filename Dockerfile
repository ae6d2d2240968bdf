# Astro Runtime for Airflow 3.3 on Python 3.11, with the same exact pins as requirements.txt and the lock.
FROM astrocrpublic.azurecr.io/runtime:3.3-2-python-3.11

# Every package at its locked version: requirements.txt's pins, and each transitive one from constraints.txt
# (the lock of `make lock`). Run after the Runtime's own steps, so anything they installed is brought to the lock.
COPY --chown=astro:0 requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

# DAG code reads endpoints from include/config for this profile. The image is production's: it never falls back to
# the local facility (whose placeholders production refuses before anything is sent; `make placeholders`). The
# local runs set `local` themselves: `astro dev` (docker-compose.override.yml), make demo/serve (tools/local_airflow.py).
ENV ALS_ENDPOINT_PROFILE=production
# `astro dev`: the local facility's file systems, a volume shared by the facility service and the Airflow
# containers (docker-compose.override.yml); created here so the volume belongs to the image's user.
RUN mkdir -p /usr/local/airflow/facility-data
