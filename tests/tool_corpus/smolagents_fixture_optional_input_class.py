from smolagents.tools import Tool, tool


class OptionalInputTool(Tool):
    name = "optional_input_tool"
    description = "A tool with an optional input parameter"
    inputs = {
        "required_text": {"type": "string", "description": "Required input text"},
        "optional_text": {"type": "string", "description": "Optional input text", "nullable": True},
    }
    output_type = "string"

    def forward(self, required_text: str, optional_text: str | None = None) -> str:
        if optional_text:
            return f"{required_text} + {optional_text}"
        return required_text
