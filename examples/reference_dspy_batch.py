# The DSPy example of the original MinimaLLM document ("DSPy Batch Processing with
# `run_dspy_batch()`"), verbatim except its import line, which names minimallm instead of
# trec_auto_judge.llm. It reads the endpoint from the environment; try it against the
# built-in mock, which answers DSPy prompts in DSPy's format:
#
#     minimallm mock --dspy --port 8000 &
#     OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_MODEL=mock-model \
#         python examples/reference_dspy_batch.py
#
# tests/test_reference_examples.py runs it so. Left as written (its Optional, its
# import order): lint and formatting are off for this file.
# ruff: noqa
# fmt: off
import asyncio
import dspy
from pydantic import BaseModel
from typing import Optional
from minimallm import run_dspy_batch

# Define annotation model with fields matching DSPy signature
class MyAnnotation(BaseModel):
    question: str
    context: str
    answer: Optional[str] = None
    confidence: Optional[float] = None

# Define DSPy signature
class QA(dspy.Signature):
    question: str = dspy.InputField()
    context: str = dspy.InputField()
    answer: str = dspy.OutputField()
    confidence: float = dspy.OutputField()

    @classmethod
    def convert_output(cls, prediction, obj: MyAnnotation):
        obj.answer = prediction.answer
        obj.confidence = float(prediction.confidence)

async def main():
    # Prepare annotation objects
    annotations = [
        MyAnnotation(question="What is 2+2?", context="Math question"),
        MyAnnotation(question="What is Paris?", context="Geography question"),
    ]

    # Execute batch (automatically extracts question & context fields)
    results = await run_dspy_batch(
        QA,                    # Signature class
        annotations,           # Annotation objects
        QA.convert_output     # Output converter
    )

    # Results have outputs filled in
    for result in results:
        print(f"Q: {result.question}")
        print(f"A: {result.answer} (confidence: {result.confidence})")

asyncio.run(main())
