from smolagents.tools import Tool, tool


class TestTool(Tool):
    name = "test_tool"
    description = "A test tool"
    inputs = {"input": {"type": "string", "description": "Input value"}}
    output_type = "string"

    def forward(self, input):
        if input == "error":
            raise ValueError("Tool execution error")
        return f"Processed: {input}"
