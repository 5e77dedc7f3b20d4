"""Discovery sources: each produces a desired set of targets for the reconciler.

A source never touches running targets itself; it hands ``Gateway.apply`` (or,
for the config file, ``Gateway.reload``) the whole desired state, and the
gateway diffs and applies it. A source never reports an empty set because it
lost its connection: while it cannot see, the last known targets keep serving.
"""

from __future__ import annotations

from .kubernetes import KubernetesSource, targets_from

__all__ = ["KubernetesSource", "targets_from"]
