"""Agent clients (Hermes Agent, Clawrium, OpenAI Agents SDK, OpenAI SDK): what they need and read."""
