"""fullcycle: the pipeline's stages, shared by dodo.py and run_remote_training()."""

__version__ = "0.1.0"
