from smolagents.tools import Tool, tool


class FailTool(Tool):
    name = "specific"
    description = "test description"
    inputs = {"string_input": {"type": "string", "description": "input description"}}
    output_type = "string"

    def __init__(self, url):
        super().__init__(self)
        self.url = url

    def forward(self, string_input: str) -> str:
        return self.url + string_input

fail_tool = FailTool("dummy_url")
