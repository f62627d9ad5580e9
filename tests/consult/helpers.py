"""Out-of-scope consultation objects for tests/test_scope_enumeration.py."""

from __future__ import annotations

from typing import Any


def foreign_consult_ids(db_session: Any, store: Any, customer: Any) -> dict[str, int]:
    from backend.consult.models import Conversation, ConversationStatus, Message, MessageKind, Sender, Topic

    conversation = Conversation(
        customer_id=customer.id, store_id=store.id, topic=Topic.SERVICE, status=ConversationStatus.OPEN
    )
    db_session.add(conversation)
    db_session.flush()
    message = Message(conversation_id=conversation.id, sender=Sender.OWNER, kind=MessageKind.TEXT, text="在吗")
    db_session.add(message)
    db_session.flush()
    return {"conversation_id": conversation.id, "message_id": message.id}
