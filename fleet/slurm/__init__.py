"""Slurm: run verify as jobs (``verify --via slurm``), and act on a verdict (``slurm-sync``: drain and resume).

``nodes``: a node's state from ``scontrol show node -o`` (pure parser); ``client``: the Slurm commands, run here
or over SSH on a login node; ``sync``: the drain/resume plan (pure) and its application; ``jobs``: verify as one
job per node.
"""
