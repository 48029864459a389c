"""The pod's part of the run: rent, resume, check and terminate it (lifecycle.py), the inputs (upload.py),
following the detached training (follow.py), bringing the adapter home (download.py) and unpacking it
safely (extract.py), ending pods a crashed run left (reaper.py), and `doit gpu_check`: a pod rented for
the preflight alone (gpu_check.py). What the pod receives is tasks/data/manifest.py.
"""

from tasks.pod.download import download_adapter
from tasks.pod.extract import extract_adapter
from tasks.pod.follow import follow_training
from tasks.pod.gpu_check import check_gpu
from tasks.pod.lifecycle import create_pod, ensure_terminated, terminate_pod
from tasks.pod.reaper import reap
from tasks.pod.upload import upload_inputs

__all__ = ["check_gpu", "create_pod", "download_adapter", "ensure_terminated", "extract_adapter", "follow_training",
           "reap", "terminate_pod", "upload_inputs"]
