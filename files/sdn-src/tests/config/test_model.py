"""The model's validation and the JSON Schema generated from it agree.

Bodies are generated from each resource's own field specs, mixing valid and invalid
values. Whatever the server's validation accepts, the document's schema must accept
too (the server may refuse more: cross-field checks such as a gateway inside its subnet).
Validation never fails with anything but a FieldError naming a field of the body.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrstack.config import fields as f
from vrstack.config.fields import FieldError, fields_schema
from vrstack.config.model import RESOURCES, Resource

JUNK = st.one_of(
    st.none(), st.integers(-5, 5), st.text(max_size=4), st.booleans(), st.just([]), st.just({})
)


def values(spec: f.Field) -> st.SearchStrategy[Any]:
    """Mostly plausible values for a field, sometimes junk."""
    good: st.SearchStrategy[Any]
    if isinstance(spec, f.Enum):
        good = st.sampled_from(spec.values)
    elif isinstance(spec, f.Bool):
        good = st.booleans()
    elif isinstance(spec, f.Int):
        good = st.integers(spec.low - 1, min(spec.high + 1, spec.low + 70000))
    elif isinstance(spec, f.Range):
        good = st.lists(
            st.integers(spec.low, min(spec.high, spec.low + 100)), min_size=1, max_size=3
        )
    elif isinstance(spec, f.CIDR):
        good = st.sampled_from(
            [
                "198.18.64.0/24",
                "198.18.64.0/29",
                "198.18.64.1/24",
                "2001:db8::/64",
                "198.18.0.0/15",
                "nope",
            ]
        )
    elif isinstance(spec, f.IP):
        good = st.sampled_from(
            ["198.18.64.1", "198.18.64.5", "198.18.65.1", "2001:db8::1", "::", "300.1.1.1"]
        )
    elif isinstance(spec, f.MAC):
        good = st.sampled_from(["02:00:00:00:00:01", "02:AB:cd:00:00:01", "0200.0000.0001"])
    elif isinstance(spec, f.Ref):
        good = st.sampled_from(["00000000-0000-4000-8000-000000000001", "not-a-uuid"])
    elif isinstance(spec, f.Str):
        good = st.text(alphabet="abc:-_. 0", max_size=12)
    elif isinstance(spec, f.ListOf):
        good = st.lists(values(spec.item), max_size=3)
    elif isinstance(spec, f.Obj):
        good = objects(spec.fields)
    else:
        raise AssertionError(f"no strategy for {spec!r}")
    return st.one_of(good, good, good, JUNK)


def objects(specs: dict[str, f.Field]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: values(v) for k, v in specs.items()})


@pytest.mark.parametrize("res", list(RESOURCES.values()), ids=lambda r: r.name)
@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_validation_agrees_with_schema(res: Resource, data: st.DataObject) -> None:
    body = data.draw(objects(res.fields))
    schema = jsonschema.Draft202012Validator(fields_schema(res.fields))
    try:
        out = res.validate(body)
    except FieldError as exc:
        top = exc.field.split("[")[0].split(".")[0]
        assert top in body or res.fields[top].required, (exc.field, body)
        return
    assert schema.is_valid(body), list(schema.iter_errors(body))
    assert schema.is_valid(out)  # defaults filled in are valid too


def test_subnet_checks_name_nested_fields() -> None:
    vn = RESOURCES["virtual-network"]
    with pytest.raises(FieldError) as info:
        vn.validate(
            {
                "subnets": [
                    {
                        "cidr": "198.18.64.0/24",
                        "allocation_pools": [{"start": "198.18.64.9", "end": "198.18.64.3"}],
                    }
                ]
            }
        )
    assert info.value.field == "subnets[0].allocation_pools[0]"
    with pytest.raises(FieldError) as info:
        vn.validate({"subnets": [{"cidr": "198.18.64.0/31"}]})
    assert info.value.field == "subnets[0].cidr"
    out = vn.validate({"subnets": [{"cidr": "2001:db8::/64"}]})
    assert out["subnets"][0]["gateway"] == "2001:db8::1"
