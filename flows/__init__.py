"""Prefect flows and the ``angioflow`` command line: thin wiring over pipeline/ and models/."""

import os

# This machine class has no route to Prefect's telemetry endpoint; a failed send only adds noise.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
