"""``angioflow serve``: the flows as Prefect deployments on the catalog's schedules."""

from __future__ import annotations

from typing import Annotated

import typer
from angioflow.flows.catalog import find_catalog
from angioflow.flows.cli._app import app, user_errors
from angioflow.flows.cli._options import CatalogOption
from angioflow.flows.cli._render import console


@app.command()
@user_errors
def serve(
    catalog: CatalogOption = None,
    work_pool: Annotated[
        str | None,
        typer.Option(
            help="Register the deployments for this work pool's workers and exit (a process "
            "pool is created when none has that name); start workers with "
            "`prefect worker start --pool NAME`"
        ),
    ] = None,
) -> None:
    """Deploy the ingest, curate and generate flows with the catalog's datasets as parameters
    and its `schedules` (cron): served from this process, or registered for a work pool."""
    from angioflow.flows.deployments import (  # Prefect: this command only
        build_deployments,
        register_deployments,
        serve_deployments,
    )

    loaded = find_catalog(catalog)
    if work_pool is not None:
        for name, deployment_id in register_deployments(loaded, work_pool).items():
            console.print(f"registered {name} for work pool {work_pool} ({deployment_id})")
        return
    deployments = build_deployments(loaded)
    for deployment in deployments:
        schedule = loaded.schedules.get(deployment.flow_name)
        when = f"on cron '{schedule.cron}' ({schedule.timezone})" if schedule else "on demand"
        console.print(f"serving {deployment.flow_name}/{deployment.name} {when}")
    serve_deployments(deployments)
