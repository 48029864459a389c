"""The trainer that runs on the pod, as named steps: `config` (inputs, exit codes), `data` (prompt
format, rows, fit to length), `load` (CUDA checks, download progress, the model), `lora` (targets,
router, start_from), `fit` (trainer, loss log), `measure` (held-out loss and answers) and `save`.

remote/train_unsloth.py runs them in order. Nothing here imports the orchestrator (tasks/): the pod
has only these files and its Python. torch and the training stack are imported inside the steps
that use them, so `config` and `data` load fast.
"""
