"""doit's side of the pipeline (dodo.py holds the graph itself): the action that runs a stage body
inside its record (actions.py), the up-to-date rules that ask the pod (uptodate.py), signals and exit
codes (signals.py), the commands that are not stages (commands.py), and run_remote_training(), the
seed's function contract over the same graph (contract.py).
"""

from tasks.pipeline.actions import Reporter, doit_action, teardown_action
from tasks.pipeline.contract import run_remote_training

__all__ = ["Reporter", "doit_action", "run_remote_training", "teardown_action"]
