"""Example mt-core tool package: tools an agent can call, registered through a plugin hook."""

from .tools import UnitConverterTool, calculator, human_size

__all__ = ["UnitConverterTool", "calculator", "human_size"]
