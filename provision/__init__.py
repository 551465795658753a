"""``invoke provision``: install and configure nvidia-container-toolkit on GPU nodes, idempotently.

- :mod:`provision.settings`  what to install and from where (defaults, inventory variables, options)
- :mod:`provision.facts`     one read-only round trip per host, and the distribution family
- :mod:`provision.steps`     pure plans: ``plan(facts, settings) -> Plan`` (no commands, no change)
- :mod:`provision.apply`     runs the plans over a transport, ok / changed / skipped / failed per step
- :mod:`provision.validate`  nvidia-ctk, the runtimes' nvidia entry, the optional container smoke test
- :mod:`provision.secrets`   the sudo password: read once, never shown
- :mod:`provision.run`       fan-out, the audit's verdict, the report and its rendering
"""
