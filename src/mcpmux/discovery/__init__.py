"""Discovery sources: each produces a desired set of targets for the reconciler.

A source never touches running targets itself; it hands ``Gateway.apply`` (or,
for the config file, ``Gateway.reload``) the whole desired state, and the
gateway diffs and applies it.
"""
