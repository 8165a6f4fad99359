"""The node agent: runs on every on-prem node and Azure VM, holds its node's session
on the ``nodes`` queue, runs each assignment as a process and reports events."""

from agent.agent import Agent
from agent.cli import run_agent
from agent.config import AgentConfig

__all__ = ["Agent", "AgentConfig", "run_agent"]
