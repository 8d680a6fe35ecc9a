"""Run by tests/cache/test_minima_llm_parity.py in minima-llm's own venv (not ours).

``python _minima_child.py <requests.json> <results.json>``: minima-llm's
``OpenAIMinimaLlm.from_env()`` (OPENAI_BASE_URL, OPENAI_MODEL, CACHE_DIR,
CACHE_LOOKUP_DIRS, MODEL_SYNONYMS, CACHE_FORCE_REFRESH from the environment) answers
each request in turn; each result's text, cached flag and cache source go to the
results file as JSON (its stdout carries minima-llm's own prints).
"""

import asyncio
import json
import sys
from typing import Any

from minima_llm import MinimaLlmFailure, MinimaLlmRequest, OpenAIMinimaLlm


async def answer(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    backend = OpenAIMinimaLlm.from_env()
    results = []
    try:
        for spec in specs:
            result = await backend.generate(MinimaLlmRequest(**spec))
            if isinstance(result, MinimaLlmFailure):
                results.append({"failure": result.message})
            else:
                results.append(
                    {"text": result.text, "cached": result.cached, "source": result.cache_source}
                )
    finally:
        await backend.aclose()
    return results


def main(requests_path: str, results_path: str) -> None:
    with open(requests_path, encoding="utf-8") as f:
        specs = json.load(f)
    results = asyncio.run(answer(specs))
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
