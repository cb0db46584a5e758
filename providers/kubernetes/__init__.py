"""Kubernetes: the ``kubernetes`` actuator (canary Deployment beside the stable one).

See :mod:`providers.kubernetes.actuator` and :mod:`providers.kubernetes.podspec`.
"""

from providers.kubernetes.actuator import KubernetesActuator, KubernetesActuatorOptions
from providers.kubernetes.podspec import PodMapping, apply_change

__all__ = ["KubernetesActuator", "KubernetesActuatorOptions", "PodMapping", "apply_change"]
