"""``group_vars/`` and ``host_vars/`` beside a source, as Ansible's host_group_vars plugin reads them.

For an entity (group or host) named N, the first of ``N``, ``N.yml``, ``N.yaml``, ``N.json`` that exists is
read; when it is a directory, every file under it (recursively, sorted, skipping hidden files, ``~``
backups and extensions other than none/.yml/.yaml/.json) is read and merged in that order.
The file walking is the loader's (:func:`fleet.inventory.loader.find_vars_files`); this module parses.
"""

from __future__ import annotations

from fleet.inventory.errors import InventoryError
from fleet.inventory.validate import validate_vars
from fleet.inventory.yaml_source import line_of, load_yaml

EXTENSIONS = ("", ".yml", ".yaml", ".json")


def parse_vars_file(text: str, path: str, entity: str) -> dict:
    """One vars file (YAML or JSON) as a mapping; empty files are empty mappings."""
    data = load_yaml(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(path, f"variables file must be a mapping, got {type(data).__name__}", line=1)
    validate_vars(data, entity, path, lambda k: line_of(data, k))
    return dict(data)
