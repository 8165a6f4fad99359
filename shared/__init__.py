"""HybridHPC's domain, its ports and adapters, shared by the function app, the agent and the CLI."""
