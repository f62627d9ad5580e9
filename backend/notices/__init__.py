"""Subscribe messages (订阅消息) to owners, shared by every feature that notifies them."""
