"""The consultation API is documented: every endpoint in the OpenAPI document, request bodies
with examples, the conflict answers named."""

from __future__ import annotations

from typing import Any


def test_every_consult_endpoint_is_documented_with_examples(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    paths = {p: ops for p, ops in spec["paths"].items() if "/consult/" in p}
    expected = {
        "/api/app/v1/consult/conversations": {"get", "post"},
        "/api/app/v1/consult/conversations/{conversation_id}": {"get"},
        "/api/app/v1/consult/conversations/{conversation_id}/messages": {"get", "post"},
        "/api/app/v1/consult/conversations/{conversation_id}/read": {"post"},
        "/api/app/v1/consult/conversations/{conversation_id}/close": {"post"},
        "/api/app/v1/consult/conversations/{conversation_id}/reopen": {"post"},
        "/api/workbench/v1/consult/inbox": {"get"},
        "/api/workbench/v1/consult/messages/{message_id}/text": {"get"},
        "/api/workbench/v1/consult/conversations/{conversation_id}": {"get"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/messages": {"get", "post"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/claim": {"post"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/read": {"post"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/transfer-targets": {"get"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/transfer": {"post"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/close": {"post"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/reopen": {"post"},
        "/api/workbench/v1/consult/conversations/{conversation_id}/responses": {"get"},
        "/api/workbench/v1/consult/stores/{org_unit_id}/sla": {"put"},
        "/api/workbench/v1/customers/{customer_id}/consult/conversations": {"get"},
    }
    assert {p: set(ops) - {"parameters"} for p, ops in paths.items()} == expected
    opened = paths["/api/app/v1/consult/conversations"]["post"]
    assert opened["requestBody"]["content"]["application/json"]["example"]["topic"] == "service"
    assert opened["responses"]["201"]["content"]["application/json"]["example"]["status"] == "open"
    for path in (
        "/api/app/v1/consult/conversations/{conversation_id}/messages",
        "/api/workbench/v1/consult/conversations/{conversation_id}/messages",
    ):
        post = paths[path]["post"]
        assert post["requestBody"]["content"]["application/json"]["example"]["client_id"]
        assert {"200", "201", "422"} <= set(post["responses"])
    claim = paths["/api/workbench/v1/consult/conversations/{conversation_id}/claim"]["post"]
    assert "consult.already_claimed" in claim["responses"]["409"]["description"]
    topics = spec["components"]["schemas"]["ConsultOpenIn"]["properties"]["topic"]["enum"]
    assert topics == ["new_car", "used_car", "service", "insurance", "finance", "other"]
