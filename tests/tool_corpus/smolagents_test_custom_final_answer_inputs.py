from smolagents.default_tools import DuckDuckGoSearchTool, FinalAnswerTool, PythonInterpreterTool, VisitWebpageTool


class CustomFinalAnswerToolWithCustomInputs(FinalAnswerTool):
    inputs = {
        "answer1": {"type": "string", "description": "First part of the answer."},
        "answer2": {"type": "string", "description": "Second part of the answer."},
    }

    def forward(self, answer1: str, answer2: str) -> str:
        return answer1 + " and " + answer2
