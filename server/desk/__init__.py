"""The agent's desk: canned responses (per tenant and per agent, with variables) and labels on
conversations (README "The desk")."""
