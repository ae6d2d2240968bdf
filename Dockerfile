# Astro Runtime for Airflow 3.3 on Python 3.11, with the same exact pins as requirements.txt and the lock.
FROM astrocrpublic.azurecr.io/runtime:3.3-2-python-3.11

COPY --chown=astro:0 requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

# DAG code reads endpoints from include/config; production deployments set ALS_ENDPOINT_PROFILE=production.
ENV ALS_ENDPOINT_PROFILE=local
