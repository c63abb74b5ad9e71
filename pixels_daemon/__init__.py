"""pixelsd, the meta-orchestrator daemon, and pixelsctl, its operator client.

Kept empty on purpose: pixelsctl imports from this package and its start-up time is measured.
"""

__version__ = "0.1.0"
