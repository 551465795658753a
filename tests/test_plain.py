"""fleet.plain.plain gives what dataclasses.asdict gives, without the deep copies."""

from __future__ import annotations

import collections
import dataclasses
import enum

from fleet.plain import plain
from fleet.status import Check, Status


class Colour(str, enum.Enum):
    RED = "red"


Pair = collections.namedtuple("Pair", "a b")


@dataclasses.dataclass
class Inner:
    x: int
    tags: tuple = ()


@dataclasses.dataclass
class Outer:
    name: str
    colour: Colour
    inner: Inner
    items: list
    table: dict
    pair: Pair
    nothing: None = None


def test_plain_equals_asdict_on_nested_data():
    value = Outer("n", Colour.RED, Inner(3, ("a", "b")), [Inner(1), {"k": [1.5, None]}], {"z": Inner(2)},
                  Pair(Inner(4), 5))
    got = plain(value)
    assert got == dataclasses.asdict(value)
    assert got["inner"] == {"x": 3, "tags": ("a", "b")} and type(got["inner"]["tags"]) is tuple
    assert type(got["pair"]) is Pair and got["pair"].a == {"x": 4, "tags": ()}
    assert got["items"] is not value.items and got["table"] is not value.table  # containers are new


def test_a_checks_dict_keeps_its_keys_in_order_and_drops_empty_details():
    c = Check("nvidia-smi", Status.FAIL, "driver mismatch", observed=["a"], expected={"b": 1})
    assert list(c.to_dict().items()) == [("name", "nvidia-smi"), ("status", "fail"), ("message", "driver mismatch"),
                                         ("observed", ["a"]), ("expected", {"b": 1})]
    d = Check("x", Status.WARN, "m", details={"hosts": 3}).to_dict()
    assert d["details"] == {"hosts": 3} and list(d) == ["name", "status", "message", "observed", "expected",
                                                        "details"]
