"""OpenAPI examples of the owner app services (booking, stores, consultation, leads) and their
workbench side: every operation documents a response example and, with a body, a request
example; examples cannot drift from the schemas (a response example carries exactly the
schema's properties, nested objects too; a request example only fields the schema knows; enum
values and date-times are valid)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

PREFIXES = (
    "/api/app/v1/stores",
    "/api/app/v1/service-types",
    "/api/app/v1/booking",
    "/api/app/v1/bookings",
    "/api/app/v1/me/bookings",
    "/api/app/v1/consult",
    "/api/app/v1/leads",
    "/api/app/v1/me/leads",
    "/api/app/v1/listings",
    "/api/workbench/v1/stores",
    "/api/workbench/v1/bookings",
    "/api/workbench/v1/booking",  # also /booking-slots
    "/api/workbench/v1/consult",
    "/api/workbench/v1/customers/{customer_id}/consult",
    "/api/workbench/v1/leads",
    "/api/workbench/v1/listings",
)
METHODS = ("get", "post", "put", "patch", "delete")


def _operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, item in sorted(spec["paths"].items())
        if path.startswith(PREFIXES)
        for method, op in item.items()
        if method in METHODS
    ]


def _examples(media: dict[str, Any]) -> list[tuple[str, Any]]:
    """The example, or each of the named examples, of a media type object."""
    found = [("example", media["example"])] if "example" in media else []
    found += [(name, ex["value"]) for name, ex in media.get("examples", {}).items()]
    return found


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the schema behind $ref / allOf / anyOf of a nullable nested field, whether null is allowed)."""
    nullable = bool(schema.get("nullable"))
    for combiner in ("allOf", "anyOf", "oneOf"):
        if combiner in schema:
            branches = [b for b in schema[combiner] if "$ref" in b or "properties" in b or "items" in b]
            nullable = nullable or any(b.get("nullable") for b in schema[combiner])
            assert len(branches) == 1, schema
            schema = branches[0]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return spec["components"]["schemas"][name], nullable
    return schema, nullable


def _check_value(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str, *, complete: bool) -> list[str]:
    schema, nullable = _resolve(spec, schema)
    if value is None:
        return [] if nullable or not schema else [f"{where}: null but the schema is not nullable"]
    problems: list[str] = []
    if "properties" in schema:
        if not isinstance(value, dict):
            return [f"{where}: an object expected, got {value!r}"]
        props = schema["properties"]
        unknown = sorted(set(value) - set(props))
        if unknown:
            problems.append(f"{where}: keys not in the schema: {unknown}")
        missing = sorted(set(props) - set(value))
        if complete and missing:
            problems.append(f"{where}: schema properties missing from the example: {missing}")
        for key in sorted(set(value) & set(props)):
            problems += _check_value(spec, props[key], value[key], f"{where}.{key}", complete=complete)
        return problems
    kind = schema.get("type")
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: a list expected, got {value!r}"]
        if "items" in schema:
            for i, item in enumerate(value):
                problems += _check_value(spec, schema["items"], item, f"{where}[{i}]", complete=complete)
        return problems
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    expected = {"integer": int, "number": (int, float), "boolean": bool, "string": str, "object": dict}.get(kind)
    if expected and (not isinstance(value, expected) or (kind in ("integer", "number") and isinstance(value, bool))):
        problems.append(f"{where}: {value!r} is not a {kind}")
    elif kind == "string":
        fmt = schema.get("format")
        try:
            if fmt == "date-time":
                if datetime.fromisoformat(value).utcoffset() is None:
                    problems.append(f"{where}: {value!r} has no UTC offset")
            elif fmt == "date":
                date.fromisoformat(value)
        except ValueError:
            problems.append(f"{where}: {value!r} is not a {fmt}")
    return problems


def _json(content: dict[str, Any]) -> dict[str, Any]:
    return content.get("application/json", {})


def test_the_operations_checked_are_the_owner_app_services(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    ops = dict(_operations(spec))
    assert len(ops) >= 67, len(ops)  # every prefix matched, none silently dropped
    for needle in (
        "POST /api/app/v1/bookings",
        "GET /api/app/v1/booking/slots",
        "GET /api/app/v1/stores/{org_unit_id}",
        "POST /api/app/v1/consult/conversations",
        "GET /api/app/v1/me/leads",
        "GET /api/app/v1/listings/{listing_id}",
        "PATCH /api/workbench/v1/booking-slots/{slot_id}",
        "PUT /api/workbench/v1/stores/{org_unit_id}/capacity-template",
        "GET /api/workbench/v1/customers/{customer_id}/consult/conversations",
        "PATCH /api/workbench/v1/listings/{listing_id}",
    ):
        assert needle in ops, needle


def test_every_operation_has_a_response_example_and_a_request_example(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    missing = []
    for where, op in _operations(spec):
        bodies = {code: resp for code, resp in op["responses"].items() if code.startswith("2") and "content" in resp}
        if not bodies and "204" not in op["responses"]:
            missing.append(f"{where}: no success response with a body")
        for code, resp in bodies.items():
            if not _examples(_json(resp["content"])):
                missing.append(f"{where} {code}: no response example")
        if "requestBody" in op and not _examples(_json(op["requestBody"]["content"])):
            missing.append(f"{where}: no request example")
    assert not missing, "\n".join(missing)


def test_response_examples_carry_exactly_the_schema_properties(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    problems = []
    for where, op in _operations(spec):
        for code, resp in op["responses"].items():
            media = _json(resp.get("content", {})) if code.startswith("2") else {}
            for name, value in _examples(media):
                problems += _check_value(spec, media["schema"], value, f"{where} {code} {name}", complete=True)
    assert not problems, "\n".join(problems)


def test_request_examples_use_only_fields_of_the_request_schema(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    problems = []
    for where, op in _operations(spec):
        media = _json(op.get("requestBody", {}).get("content", {}))
        for name, value in _examples(media):
            problems += _check_value(spec, media["schema"], value, f"{where} request {name}", complete=False)
    assert not problems, "\n".join(problems)


def test_request_examples_are_accepted_by_the_endpoint_schemas(app: Any) -> None:
    """Each request example loads through the marshmallow schema the view validates with
    (input schemas refuse unknown fields, so a stale example would be refused here)."""
    checked = 0
    problems = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(tuple(p.split("{")[0] for p in PREFIXES)):
            continue
        view = app.view_functions[rule.endpoint]
        handlers = (
            [getattr(view.view_class, m) for m in METHODS if hasattr(view.view_class, m)]
            if hasattr(view, "view_class")
            else [view]
        )
        for handler in handlers:
            for param in getattr(handler, "_apidoc", {}).get("arguments", {}).get("parameters", []):
                if param["in"] != "json":
                    continue
                schema = param["schema"]
                schema = schema() if isinstance(schema, type) else schema
                values = [param["example"]] if param.get("example") is not None else []
                values += [ex["value"] for ex in (param.get("examples") or {}).values()]
                for value in values:
                    checked += 1
                    errors = schema.validate(value)
                    if errors:
                        problems.append(f"{rule.rule} {handler.__name__}: {errors}")
    assert checked >= 40, checked
    assert not problems, "\n".join(problems)


def test_the_checker_refuses_a_drifted_example() -> None:
    spec = {
        "components": {
            "schemas": {
                "Ref": {"type": "object", "properties": {"id": {"type": "integer"}}},
                "Thing": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["booked", "arrived"]},
                        "at": {"type": "string", "format": "date-time"},
                        "advisor": {
                            "anyOf": [{"$ref": "#/components/schemas/Ref"}, {"type": "object", "nullable": True}]
                        },
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Ref"}},
                    },
                },
            }
        }
    }
    thing = {"$ref": "#/components/schemas/Thing"}
    good = {"status": "booked", "at": "2026-12-05T01:00:00+00:00", "advisor": None, "items": [{"id": 1}]}
    assert _check_value(spec, thing, good, "x", complete=True) == []
    drifted = {**good, "statu": "booked", "items": [{"id": 1, "name": "王"}]}
    del drifted["at"]
    problems = _check_value(spec, thing, drifted, "x", complete=True)
    assert "x: keys not in the schema: ['statu']" in problems
    assert "x: schema properties missing from the example: ['at']" in problems
    assert "x.items[0]: keys not in the schema: ['name']" in problems
    assert _check_value(spec, thing, {**good, "status": "done"}, "x", complete=True)
    assert _check_value(spec, thing, {**good, "at": "2026-12-05T01:00:00"}, "x", complete=True)
    assert _check_value(spec, thing, {**good, "advisor": {"id": "3"}}, "x", complete=True)
    assert _check_value(spec, thing, {"status": "booked"}, "x", complete=False) == []
