"""The RunPod provider: the lifecycle (`RunpodProvider`, provider.py, which picks the API with
`api_client()`) apart from the API client (`PodApi` and what both generations share, client.py;
REST v2 in rest.py, GraphQL in graphql.py, the one file to delete when RunPod retires it), which GPU
to rent (choice.py) and how to reach the pod (reach.py, connection_file.py).
"""

from tasks.providers.runpod.client import PodApi
from tasks.providers.runpod.provider import RunpodProvider, api_client

__all__ = ["PodApi", "RunpodProvider", "api_client"]
