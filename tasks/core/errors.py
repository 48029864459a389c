"""Errors a user can act on. The stage runner prints their message without a traceback."""


class FullcycleError(RuntimeError):
    """Base of every error whose message already says what went wrong and what to do."""


class ProviderError(FullcycleError):
    """Renting, polling or terminating a pod failed."""


class NoCapacityError(ProviderError):
    """No GPU type / cloud type candidate had capacity."""


class TransportError(FullcycleError):
    """A command on the pod could not be run or its output could not be trusted."""


class TrainingError(FullcycleError):
    """The training script on the pod exited non-zero or never finished."""
