"""The JSON of a dynamic inventory script (``--list``) and of ``ansible-inventory --list``, data in, Source out::

    {"_meta": {"hostvars": {"node01": {"ansible_host": "10.0.0.11"}}},
     "all": {"children": ["ungrouped", "gpu"]},
     "gpu": {"hosts": ["node01"], "vars": {"gpufleet_gpu_count": 8}, "children": []}}

A group may also be a bare list of host names.  Without ``_meta`` a script is asked ``--host NAME`` for each
host (by the loader, which passes the answers in ``host_vars``).
"""

from __future__ import annotations

import json
from typing import Any

from fleet.inventory.build import Source
from fleet.inventory.errors import InventoryError
from fleet.inventory.validate import check_host_name, validate_vars


def looks_like_script_json(data: Any) -> bool:
    """True for the script format (as opposed to a YAML inventory written as JSON)."""
    if not isinstance(data, dict) or not data:
        return False
    if "_meta" in data:
        return True
    for body in data.values():
        if isinstance(body, list):
            return True
        if isinstance(body, dict) and (isinstance(body.get("hosts"), list) or isinstance(body.get("children"), list)):
            return True
    return False


def load_json(text: str, path: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InventoryError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None


def from_script_data(data: Any, path: str, host_vars: dict[str, dict] | None = None) -> Source:
    if not isinstance(data, dict):
        raise InventoryError(path, f"inventory JSON must be an object of groups, got {type(data).__name__}")
    src = Source(path)
    meta = data.get("_meta") or {}
    hostvars = (meta.get("hostvars") if isinstance(meta, dict) else None) or {}
    if not isinstance(hostvars, dict):
        raise InventoryError(path, "_meta.hostvars must be an object", key="_meta.hostvars")
    for gname, body in data.items():
        if gname == "_meta":
            continue
        src.add_group(gname)
        if isinstance(body, list):
            body = {"hosts": body}
        if not isinstance(body, dict):
            raise InventoryError(path, "group must be a list of hosts or an object with hosts/vars/children", key=gname)
        gvars = body.get("vars") or {}
        if not isinstance(gvars, dict):
            raise InventoryError(path, "vars must be an object", key=f"{gname}.vars")
        validate_vars(gvars, f"{gname}.vars", path, lambda k: None)
        src.group_vars[gname].update(gvars)
        for h in body.get("hosts") or []:
            check_host_name(str(h), path, None)
            src.add_host(str(h), gname)
        for c in body.get("children") or []:
            src.add_child(gname, str(c))
    for h, hv in {**hostvars, **(host_vars or {})}.items():
        if not isinstance(hv, dict):
            raise InventoryError(path, "host variables must be an object", key=f"_meta.hostvars.{h}")
        if str(h) not in src.host_vars:
            continue  # as Ansible: variables for a host no group lists are not a host
        validate_vars(hv, str(h), path, lambda k: None)
        src.add_host(str(h), None, hv)
    return src
