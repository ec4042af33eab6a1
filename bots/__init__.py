"""The AI agent: the LLM seam, the answer pipeline, the handoff policy, summaries and copilot
drafts. It reads knowledge only through the port it defines and never imports ``server``."""
