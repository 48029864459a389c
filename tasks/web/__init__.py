"""The local web page (`doit serve`): a button over the same doit pipeline, and its record made visible.

Needs the `web` extra (Starlette, uvicorn); nothing here is imported unless `doit serve` runs.
"""
