from smolagents.tools import Tool, tool


class MultiInputTool(Tool):
    name = "multi_input_tool"
    description = "Tool with multiple inputs"
    inputs = {
        "text": {"type": "string", "description": "Text input"},
        "count": {"type": "integer", "description": "Number count"},
    }
    output_type = "object"

    def forward(self, text, count):
        return "test"
