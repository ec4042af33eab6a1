"""Chat: the only write path for messages and the conversation lifecycle."""
