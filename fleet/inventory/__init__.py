"""Ansible-compatible inventories: load every source Ansible reads, the same way, and select hosts by pattern.

Modules:

* :mod:`.errors` -- :class:`InventoryError`, :class:`PatternError`;
* :mod:`.connection` -- what the connection variables mean, as Ansible's ssh/sudo plugins read them (the last
  alias they list wins), the SSH target of a host, the checks over selected hosts (``preflight``,
  ``host_key_warning``);
* :mod:`.model` -- :class:`Host` (merged variables, connection settings, :attr:`Host.problem`), :class:`Inventory`;
* :mod:`.ranges` -- host ranges (``node[01:50:2]``) and ``host:port``;
* :mod:`.ini`, :mod:`.yaml_source`, :mod:`.json_source` -- pure parsers (text in, :class:`~.build.Source` out);
* :mod:`.vars_dirs` -- ``group_vars/`` and ``host_vars/`` files;
* :mod:`.build` -- membership (``all``, ``ungrouped``, children) and variable precedence;
* :mod:`.patterns` -- Ansible host patterns;
* :mod:`.listing` -- the ``gpufleet hosts`` table and ``gpufleet.hosts/1`` document;
* :mod:`.loader` -- sources (file, directory, script, comma list) and format detection.
"""

from fleet.inventory.loader import load_inventory, parse_inventory, split_sources
from fleet.inventory.errors import InventoryError, PatternError
from fleet.inventory.model import Host, Inventory
from fleet.inventory.patterns import select_names

__all__ = ["Host", "Inventory", "InventoryError", "PatternError", "load_inventory",
           "parse_inventory", "select_names", "split_sources"]
