"""What every other package stands on, and nothing of theirs: errors, atomic files, dates, retries,
the date's lock, the log (with secrets scrubbed), the settings and the run's paths.
"""

from tasks.core.errors import FullcycleError
from tasks.core.files import read_json, write_json
from tasks.core.paths import RunPaths, run_paths
from tasks.core.retry import Policy
from tasks.core.settings import Settings, SettingsError, load

__all__ = ["FullcycleError", "Policy", "RunPaths", "Settings", "SettingsError", "load", "read_json", "run_paths",
           "write_json"]
