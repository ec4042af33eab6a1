"""Agent: the AI agent as a conversation participant, and knowledge ingestion jobs."""
