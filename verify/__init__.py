"""gpufleet node-side verification suite.

``verify`` is the package gpufleet pushes to every node and runs there, as
``python -m verify`` (one process, every visible device) or under
``torchrun --nproc_per_node=N -m verify`` (one rank per GPU, or N gloo ranks on
a CPU-only machine).  It checks the node's PyTorch/CUDA stack and what its
devices and the links between them deliver, and writes one JSON report
(schema ``gpufleet.verify/1``, see ``docs/verify-report.md``).

It depends only on the standard library, torch, torchvision, pillow and tqdm:
nothing from the controller side (``fleet/``) is imported here.
"""

__version__ = "0.1.0"
SCHEMA = "gpufleet.verify/1"
