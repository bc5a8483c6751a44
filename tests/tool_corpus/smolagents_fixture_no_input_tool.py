from smolagents.tools import Tool, tool


class NoInputTool(Tool):
    name = "no_input_tool"
    description = "Tool with no inputs"
    inputs = {}
    output_type = "string"

    def forward(self):
        return "test"
