"""Input schemas. Pattern-checked fields are anchored with `\\Z`, not `$`: Python's `$` also
matches before a final newline, so "13800138000\\n" would pass a phone check and be stored (or
compared) with the newline; every schema module of the backend is walked, nested list items
included. And an integer field refuses a number with a fraction instead of truncating it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest
from marshmallow import Schema, ValidationError, fields, validate

import backend


def _schema_classes() -> Iterator[type[Schema]]:
    for info in pkgutil.walk_packages(backend.__path__, "backend."):
        if info.name.endswith(".schemas"):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Schema) and value.__module__ == module.__name__:
                    yield value


def _validators(field: fields.Field) -> Iterator[object]:
    yield from field.validators
    if isinstance(field, fields.List):
        yield from _validators(field.inner)


def _patterns() -> list[tuple[str, validate.Regexp]]:
    found = []
    for schema in _schema_classes():
        for name, field in schema._declared_fields.items():
            for validator in _validators(field):
                if isinstance(validator, validate.Regexp):
                    found.append((f"{schema.__module__}.{schema.__name__}.{name}", validator))
    return found


def test_the_walk_finds_the_pattern_checked_fields() -> None:
    names = {name for name, _ in _patterns()}
    assert "backend.points.schemas.AddressSchema.phone" in names
    assert "backend.wecom.schemas.ChannelInSchema.state" in names


@pytest.mark.parametrize(("name", "validator"), _patterns(), ids=lambda v: v if isinstance(v, str) else "")
def test_patterns_end_at_the_end_of_the_text(name: str, validator: validate.Regexp) -> None:
    pattern = validator.regex.pattern
    assert not pattern.endswith("$"), f"{name}: {pattern!r} ends with $, which lets a trailing newline through"


def test_a_phone_with_a_trailing_newline_is_refused() -> None:
    from backend.points.schemas import AddressSchema

    body = {"name": "王先生", "phone": "13800138000", "region": "上海", "detail": "浦东新区 1 号"}
    assert AddressSchema().load(body)["phone"] == "13800138000"
    with pytest.raises(ValidationError) as err:
        AddressSchema().load({**body, "phone": "13800138000\n"})
    assert "phone" in err.value.messages


def test_an_integer_with_a_fraction_is_refused_not_truncated() -> None:
    """marshmallow's Integer turns 1.5 into 1: a fractional id would point at another row. Every
    input schema (the project's Schema) refuses it, in lists too; whole numbers, 2.0 and numeric
    strings (query parameters) still load."""
    from backend.platform.api import Schema

    class Probe(Schema):
        store_id = fields.Integer(required=True)
        tag_ids = fields.List(fields.Integer(), load_default=list)

    assert Probe().load({"store_id": "7", "tag_ids": [1, 2.0]}) == {"store_id": 7, "tag_ids": [1, 2]}
    with pytest.raises(ValidationError) as err:
        Probe().load({"store_id": 7.5, "tag_ids": [1, 2.5]})
    assert set(err.value.messages) == {"store_id", "tag_ids"}
