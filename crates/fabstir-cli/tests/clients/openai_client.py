"""Drives a fabstir gateway with the official `openai` package, as any application would.

Usage: python openai_client.py BASE_URL MODEL
Prints one JSON document: what each call returned, for the Rust test to check against the chain.
"""

import json
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
# The gateway wants no key unless configured with one; the client insists on some string.
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
messages = [
    {"role": "system", "content": "You are a poet."},
    {"role": "user", "content": "Speak of the king."},
]
out = {}

whole = client.chat.completions.create(
    model=model, messages=messages, max_tokens=12, temperature=0, seed=7
)
out["whole"] = {
    "model": whole.model,
    "text": whole.choices[0].message.content,
    "finish_reason": whole.choices[0].finish_reason,
    "usage": whole.usage.model_dump(),
    "fabstir": whole.model_dump()["fabstir"],
}

text, usage, fabstir, chunks, finish = "", None, None, 0, None
stream = client.chat.completions.create(
    model=model,
    messages=messages,
    max_tokens=10,
    temperature=0.7,
    top_p=0.9,
    seed=3,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    chunks += 1
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    fabstir = chunk.model_dump().get("fabstir") or fabstir
out["stream"] = {
    "text": text,
    "chunks": chunks,
    "finish_reason": finish,
    "usage": usage,
    "fabstir": fabstir,
}


def refused(**kwargs):
    """The status and error code of a call the gateway must refuse."""
    try:
        client.chat.completions.create(messages=messages, **kwargs)
    except openai.APIStatusError as e:
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "code": e.code,
            "type": e.type,
            "message": e.message,
        }
    return {"class": None}


out["unknown_model"] = refused(model="no-such-model", max_tokens=4)
out["over_budget"] = refused(model=model, max_tokens=64)
out["models"] = [m.model_dump() for m in client.models.list()]
print(json.dumps(out))
