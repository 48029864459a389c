"""fullcycle: the pipeline's stages, shared by dodo.py and run_remote_training().

Packages, lowest first (a package imports only those before it): core; then the catalogue of
stages (catalog.py) and what a stage receives (context.py); transport, model, record; data,
providers; pod, post; pipeline and web. tests/test_structure.py holds the layers and checks them.
"""

__version__ = "0.1.0"
