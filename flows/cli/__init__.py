"""The ``angioflow`` command line: each command parses its options, calls one function of the
flows library, and prints what it returns (a table, or JSON with ``--json``).

One module per command group: :mod:`.store` (ingest, curate, status, history, inspect, export,
audit), :mod:`.review` (review, approve), :mod:`.demo` (phantom, demo), :mod:`.generate`
(generate-masks, generate, segment, label-av), :mod:`.serve`, and the sub-commands
``train``, ``evaluate`` and ``study``. An :class:`~angioflow.pipeline.errors.AngioflowError`
is printed as one line with exit code 2 (:func:`._app.user_errors`); anything else is a defect
and shows its traceback.
"""

# importing a command module registers its commands on `app`
from angioflow.flows.cli import demo, generate, review, serve, store  # noqa: F401
from angioflow.flows.cli._app import app
from angioflow.flows.cli._render import console
from angioflow.flows.cli.evaluate import evaluate_app
from angioflow.flows.cli.study import study_app
from angioflow.flows.cli.train import train_app

__all__ = ["app", "console"]

app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(study_app, name="study")
