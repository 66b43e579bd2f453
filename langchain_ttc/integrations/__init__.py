"""Layer 5, integrations: a reasoning step for LCEL, a chat model and a tool for agents."""
