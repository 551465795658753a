"""gpufleet controller core: inventory, SSH fan-out, audit, fleet verdicts.

Nothing here is imported on the nodes: the node side lives in ``verify/``.
"""

__version__ = "0.1.0"
