"""An UMBRELA-style relevance judge: DSPy grades query-passage pairs 0-3, with reasoning.

Runs against minimallm's mock server by default (it answers DSPy prompts in DSPy's
format, so no model or key is needed)::

    python examples/umbrela_judge.py            # mock endpoint on loopback
    python examples/umbrela_judge.py --env      # OPENAI_BASE_URL / OPENAI_MODEL / ...

Prints TREC qrels lines (``qid 0 docid grade``) on stdout; progress goes to stderr.
One passage carries a mock directive that makes its first two answers unparseable,
to show run_dspy_batch retrying with a fresh (force-refreshed) answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator

import dspy
from pydantic import BaseModel

from minimallm import BatchConfig, MinimaLlmConfig, OpenAIMinimaLlm
from minimallm.dspy import run_dspy_batch
from minimallm.mock import MockServerConfig, MockServerThread
from minimallm.mock.dspy_responder import DSPyResponder


class Umbrela(dspy.Signature):
    """Given a query and a passage, grade how well the passage answers the query:
    0 = the passage has nothing to do with the query;
    1 = the passage seems related to the query but does not answer it;
    2 = the passage has some answer for the query, but it is unclear or hidden among
        extraneous information;
    3 = the passage is dedicated to the query and contains the exact answer.
    Consider the intent of the query, how well the content matches it, and how
    trustworthy the passage is, then give the grade."""

    query: str = dspy.InputField(desc="what the user searched for")
    passage: str = dspy.InputField(desc="the candidate passage")
    relevance: int = dspy.OutputField(desc="0, 1, 2 or 3")

    @classmethod
    def convert_output(cls, prediction: dspy.Prediction, obj: Judgment) -> None:
        """Copy the grade and the reasoning into the annotation (ValueError if the grade
        is out of range: run_dspy_batch then asks again)."""
        grade = int(prediction.relevance)
        if not 0 <= grade <= 3:
            raise ValueError(f"relevance {grade} is outside 0..3")
        obj.relevance = grade
        obj.reasoning = prediction.reasoning


class Judgment(BaseModel):
    """One query-passage pair; the judge fills in relevance and reasoning."""

    qid: str
    docid: str
    query: str
    passage: str
    relevance: int | None = None
    reasoning: str | None = None


PAIRS = [
    (
        "q1",
        "d1",
        "how do bees make honey",
        "Bees make honey by evaporating water from nectar.",
    ),
    ("q1", "d2", "how do bees make honey", "Honey prices rose sharply across Europe last year."),
    ("q1", "d3", "how do bees make honey", "A bee colony has one queen and thousands of workers."),
    ("q2", "d4", "boiling point of water at altitude", "Water boils near 93 C at 2,000 m."),
    ("q2", "d5", "boiling point of water at altitude", "Pressure cookers shorten cooking times."),
    ("q2", "d6", "boiling point of water at altitude", "Everest base camp sits at 5,364 m."),
    (
        "q3",
        "d7",
        "who wrote the odyssey",
        "Homer wrote the Odyssey. #dspy:unparseable=2",
    ),
    ("q3", "d8", "who wrote the odyssey", "Ulysses by James Joyce mirrors the Odyssey."),
]


@contextlib.contextmanager
def endpoint(use_env: bool) -> Iterator[MinimaLlmConfig]:
    """The configuration to judge with: the environment's, or a local mock server's."""
    if use_env:
        yield MinimaLlmConfig.from_env()
        return
    with MockServerThread(MockServerConfig(responder=DSPyResponder())) as mock:
        yield MinimaLlmConfig(
            base_url=mock.base_url,
            model="mock-model",
            rpm=0,
            batch=BatchConfig(num_workers=4, heartbeat_s=0),
        )


async def judge(cfg: MinimaLlmConfig) -> list[Judgment]:
    """Grade every pair with ChainOfThought(Umbrela) on the batch runner."""
    items = [Judgment(qid=q, docid=d, query=query, passage=p) for q, d, query, p in PAIRS]
    async with OpenAIMinimaLlm(cfg) as backend:
        return await run_dspy_batch(
            Umbrela,
            items,
            Umbrela.convert_output,
            backend,
            predictor_class=dspy.ChainOfThought,
            lm_kwargs={"temperature": 0.0, "max_tokens": 1024},
        )


def main(argv: list[str] | None = None) -> int:
    """Judge the pairs and print qrels on stdout, reasoning on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="store_true", help="use OPENAI_* instead of the mock")
    args = parser.parse_args(argv)
    with endpoint(args.env) as cfg:
        judged = asyncio.run(judge(cfg))
    for j in judged:
        print(f"{j.qid} 0 {j.docid} {j.relevance}")
        print(f"  {j.qid}/{j.docid}: {j.reasoning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
