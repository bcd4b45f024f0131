"""``python -m angioflow``: the ``angioflow`` command line."""

from angioflow.flows.cli import app

app(prog_name="angioflow")
