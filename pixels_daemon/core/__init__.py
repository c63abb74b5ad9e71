"""The pure core: state, the rules that change it, and the views built from it.

Nothing in this package does I/O or reads a clock: callers pass ``now`` and events, and get back the
new state (mutated in place, only after validation) and an outcome saying what to tell the sender.
"""
