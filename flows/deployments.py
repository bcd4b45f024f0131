"""Prefect deployments of the ingest, curate and generate flows, with parameters from the catalog.

``angioflow serve --work-pool POOL`` registers them for a pool's workers (``prefect worker start
--pool POOL``, on any machine with angioflow installed); ``angioflow serve`` runs them in its own
process. Either way they can be run and retried from the Prefect UI or API. The flows are
referenced by module path (``flows.ingest.ingest_flow``), so a worker imports the installed
package and needs no source checkout.

Each deployment's default parameters point at the catalog's datasets (raw exams, case store,
synthetic sets); ``schedules.<flow>`` in the catalog adds a cron schedule and parameter values,
checked against the flow's typed signature when the catalog is read.
"""

from __future__ import annotations

import importlib
import typing
from typing import TYPE_CHECKING, Any

from angioflow.pipeline.raw_case import CaseLimits
from pydantic import TypeAdapter, ValidationError

if TYPE_CHECKING:
    from angioflow.flows.catalog import Catalog
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "DEPLOYMENT_NAME",
    "FLOWS",
    "build_deployments",
    "check_parameters",
    "deployment_parameters",
    "register_deployments",
    "serve_deployments",
]

DEPLOYMENT_NAME = "angioflow"
# flow name -> the flow object's module path
FLOWS = {
    "ingest": "angioflow.flows.ingest.ingest_flow",
    "curate": "angioflow.flows.curate.curate_flow",
    "generate": "angioflow.flows.generation.generation_flow",
}


def load_flow(name: str) -> Flow:
    """The flow object called ``name`` (one of :data:`FLOWS`)."""
    if name not in FLOWS:
        raise ValueError(f"no flow {name!r}; angioflow deploys {', '.join(FLOWS)}")
    module, _, attribute = FLOWS[name].rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def check_parameters(name: str, parameters: dict[str, Any]) -> None:
    """Refuse parameter values the flow ``name`` would refuse, before anything is registered.

    Raises
    ------
    ValueError
        One line naming the first unknown parameter (and the known ones) or the first value of
        the wrong type or range (and what is allowed).
    """
    flow = load_flow(name)
    hints = typing.get_type_hints(flow.fn, include_extras=True)
    known = [p for p in flow.parameters.properties]
    for key, value in parameters.items():
        if key not in known:
            raise ValueError(f"flow {name} has no parameter {key!r}; it takes: {', '.join(known)}")
        try:
            TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as error:
            problem = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise ValueError(
                f"flow {name} parameter {key}{'.' + where if where else ''}={value!r}: "
                f"{problem['msg']}"
            ) from None


def deployment_parameters(catalog: Catalog, name: str) -> dict[str, Any]:
    """Default parameters of flow ``name``'s deployment: the catalog's datasets, then the
    values of ``schedules.<name>.parameters``."""
    store = str(catalog.path("case_store"))
    defaults: dict[str, dict[str, Any]] = {
        "ingest": {
            "source": str(catalog.path("raw_exams")),
            "store": store,
            "limits": dict(catalog.entry("raw_exams").load_args),
        },
        "curate": {"store": store},
        "generate": {
            "out_dir": str(catalog.path("synthetic_set", run="x").parent),
            "store": store,
        },
    }
    if "public_datasets" in catalog.datasets:
        defaults["generate"]["data"] = str(catalog.path("public_datasets"))
    schedule = catalog.schedules.get(name)
    parameters = {**defaults[name], **(schedule.parameters if schedule else {})}
    if "limits" in parameters:
        # The settings file's names (max_pixels, max_case_mb, ...) are read into CaseLimits's
        # fields, which are what the deployment's parameter schema holds.
        parameters["limits"] = CaseLimits.model_validate(parameters["limits"]).model_dump()
    return parameters


def build_deployments(catalog: Catalog, *, work_pool: str | None = None) -> list[RunnerDeployment]:
    """The three deployments, with the catalog's cron schedules where it has them."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    deployments = []
    for name in FLOWS:
        schedule = catalog.schedules.get(name)
        deployments.append(
            load_flow(name).to_deployment(
                name=DEPLOYMENT_NAME,
                parameters=deployment_parameters(catalog, name),
                schedule=Cron(schedule.cron, timezone=schedule.timezone) if schedule else None,
                work_pool_name=work_pool,
                entrypoint_type=EntrypointType.MODULE_PATH,
                description=(load_flow(name).description or "").split("\n\n")[0],
                tags=["angioflow"],
            )
        )
    return deployments


def register_deployments(catalog: Catalog, work_pool: str) -> dict[str, str]:
    """Register the deployments for ``work_pool``'s workers (a process pool is created when none
    has that name); returns ``{"ingest/angioflow": deployment id, ...}``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(work_pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=work_pool, type="process"))
    return {
        f"{deployment.flow_name}/{deployment.name}": str(deployment.apply(work_pool_name=work_pool))
        for deployment in build_deployments(catalog, work_pool=work_pool)
    }


def serve_deployments(deployments: list[RunnerDeployment]) -> None:
    """Serve ``deployments`` from this process (their schedules included) until stopped."""
    from prefect import serve

    serve(*deployments)
