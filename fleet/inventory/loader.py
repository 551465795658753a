"""Inventory sources, as ``ansible -i`` takes them; the only module that reads files or runs processes.

A source is a YAML file, an INI file, the JSON ``ansible-inventory --list`` prints, an executable dynamic
inventory script (run with ``--list``), or a directory of such files (read as Ansible reads one: sorted,
recursively, skipping hidden files, ``group_vars``/``host_vars`` and backup/doc extensions).  Several
sources separated by commas are layered in order, as several ``-i``.  ``group_vars/`` and ``host_vars/``
beside each source (inside it, for a directory) are read with Ansible's precedence (:mod:`.build`).

Format detection: ``.yml``/``.yaml`` is YAML, ``.json`` is JSON (the script format, else a YAML-style
inventory written as JSON), ``.ini`` is INI; any other file is tried as JSON (when it starts with ``{``),
YAML, then INI, and one that is none of them is refused with each format's reason.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterable, Union

from fleet.inventory.build import Source, VarsFiles, build
from fleet.inventory.ini import parse_ini
from fleet.inventory.json_source import from_script_data, load_json, looks_like_script_json
from fleet.inventory.model import Inventory, InventoryError
from fleet.inventory.vars_dirs import EXTENSIONS, parse_vars_file
from fleet.inventory.yaml_source import from_data, load_yaml

SourceSpec = Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]]

IGNORED_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")
IGNORED_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
YAML_EXTS = (".yml", ".yaml")
SCRIPT_TIMEOUT = 120


def split_sources(spec: SourceSpec) -> list[str]:
    """``a,b`` (or a list) as a list of sources, in order."""
    if isinstance(spec, (str, os.PathLike)):
        items = [os.fspath(spec)]
    else:
        items = [os.fspath(s) for s in spec]
    out: list[str] = []
    for item in items:
        out += [p.strip() for p in item.split(",") if p.strip()] if "," in item and not os.path.exists(item) else [item]
    return out


def parse_text(text: str, path: str = "<inventory>", known_groups: frozenset | set = frozenset()) -> Source:
    """One inventory file's text as a :class:`Source`, its format told by the extension or by trying each."""
    ext = os.path.splitext(path)[1].lower()
    if ext in YAML_EXTS:
        return from_data(load_yaml(text, path), path)
    if ext == ".json":
        data = load_json(text, path)
        return from_script_data(data, path) if looks_like_script_json(data) else from_data(data, path)
    if ext == ".ini":
        return parse_ini(text, path, known_groups)
    failures: list[str] = []
    if text.lstrip().startswith("{"):
        try:
            data = load_json(text, path)
            return from_script_data(data, path) if looks_like_script_json(data) else from_data(data, path)
        except InventoryError as e:
            failures.append(f"JSON ({_reason(e)})")
    try:
        data = load_yaml(text, path)
        if data is not None:
            if not isinstance(data, dict) or not all(v is None or isinstance(v, dict) for v in data.values()):
                raise InventoryError(path, "not a mapping of groups (each with hosts/vars/children)", line=1)
            return from_data(data, path)
        failures.append("YAML (empty document)")
    except InventoryError as e:
        if "invalid YAML" not in str(e) and not str(e).endswith("not a mapping of groups (each with hosts/vars/"
                                                                  "children)"):
            raise  # it is YAML, and a malformed inventory
        failures.append(f"YAML ({_reason(e)})")
    try:
        return parse_ini(text, path, known_groups)
    except InventoryError as e:
        failures.append(f"INI ({_reason(e)})")
    raise InventoryError(path, "not an inventory in any format gpufleet reads: tried " + "; ".join(failures))


def _reason(e: InventoryError) -> str:
    text = str(e)[len(e.path) + 1:].strip()
    return text if e.line is None else f"line {e.line}: {text.split(':', 1)[1].strip() if ':' in text else text}"


def parse_inventory(text: str, path: str | os.PathLike = "<inventory>") -> Inventory:
    """Parse and validate one inventory file's text (pure: no file or network access)."""
    path = str(path)
    if not text.strip():
        raise InventoryError(path, "inventory is empty")
    return build([parse_text(text, path)], label=path)


def load_inventory(spec: SourceSpec, require_hosts: bool = True) -> Inventory:
    """Load every source of ``spec`` (a path, ``a,b`` or a list), layered in order, with their vars dirs."""
    sources = split_sources(spec)
    if not sources:
        raise InventoryError("<inventory>", "no inventory source given")
    parsed: list[Source] = []
    basedirs: list[Path] = []
    for s in sources:
        p = Path(os.path.expanduser(s))
        known = {g for src in parsed for g in src.groups}
        if p.is_dir():
            parsed += _load_dir(p, known)
            basedirs.append(p)
        else:
            parsed.append(_load_file(p, known))
            basedirs.append(p.parent)
    groups = ["all", "ungrouped"] + [g for src in parsed for g in src.groups]
    hosts = [h for src in parsed for h in src.hosts]
    vars_files = [_read_vars_dirs(d, dict.fromkeys(groups), dict.fromkeys(hosts)) for d in basedirs]
    return build(parsed, vars_files, label=",".join(sources), require_hosts=require_hosts)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InventoryError(path, f"not UTF-8 text: {e.reason} at byte {e.start}") from None
    except OSError as e:
        raise InventoryError(path, f"cannot read inventory: {e.strerror or e}") from None


def _load_file(path: Path, known: set) -> Source:
    if not path.exists():
        raise InventoryError(path, "cannot read inventory: No such file or directory")
    ext = path.suffix.lower()
    if os.access(path, os.X_OK) and ext not in (*YAML_EXTS, ".json", ".ini") and path.is_file():
        return _run_script(path)
    text = _read(path)
    if not text.strip() and ext in YAML_EXTS:
        raise InventoryError(path, "inventory is empty")
    return parse_text(text, str(path), known)


def _load_dir(path: Path, known: set) -> list[Source]:
    out: list[Source] = []
    for entry in sorted(os.listdir(path)):
        if IGNORED_NAMES.search(entry) or entry.endswith(IGNORED_EXTS):
            continue
        full = path / entry
        seen = known | {g for src in out for g in src.groups}
        if full.is_dir():
            out += _load_dir(full, seen)
        elif full.is_file():
            out.append(_load_file(full, seen))
    return out


def _run_script(path: Path) -> Source:
    def run(*args: str) -> str:
        try:
            done = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise InventoryError(path, f"inventory script {' '.join(args)} failed: {e}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise InventoryError(path, f"inventory script {' '.join(args)} exited {done.returncode}: {last}")
        return done.stdout

    data = load_json(run("--list"), str(path))
    host_vars: dict[str, dict] = {}
    if isinstance(data, dict) and "_meta" not in data:
        first = from_script_data(data, str(path))
        for h in first.hosts:
            host_vars[h] = load_json(run("--host", h), str(path)) or {}
    return from_script_data(data, str(path), host_vars)


def find_vars_files(directory: Path, name: str) -> list[Path]:
    """Ansible's lookup for one entity's vars files under ``directory`` (group_vars/ or host_vars/)."""
    if not name or "/" in name or name.startswith("."):
        return []
    for ext in EXTENSIONS:
        candidate = directory / f"{name}{ext}"
        if candidate.is_dir():
            return _dir_files(candidate)
        if candidate.is_file():
            return [candidate]
    return []


def _dir_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        full = directory / entry
        ext = os.path.splitext(entry)[1]
        if full.is_dir() and not ext:
            found += _dir_files(full)
        elif full.is_file() and ext in EXTENSIONS:
            found.append(full)
    return found


def _read_vars_dirs(basedir: Path, groups: Iterable[str], hosts: Iterable[str]) -> VarsFiles:
    out = VarsFiles()
    for kind, names, target in (("group_vars", groups, out.groups), ("host_vars", hosts, out.hosts)):
        directory = basedir / kind
        if not directory.is_dir():
            continue
        for name in names:
            merged: dict = {}
            for f in find_vars_files(directory, name):
                merged.update(parse_vars_file(_read(f), str(f), name))
            if merged:
                target[name] = merged
    return out
