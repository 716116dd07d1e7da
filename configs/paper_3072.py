"""The paper's setup: OpenAI text-embedding-3-large (3072-d) embeddings, cached by `salesrl embed`.

    OPENAI_API_KEY=... salesrl embed --data DATA --out runs/arrays-3072 --embedder.kind openai --embedder.dim 3072
    salesrl train --config configs/paper_3072.py --data.train runs/arrays-3072
"""

from salesrl_jax.configs.default import get_config as default_config

from salesrl_jax.run.config import with_overrides


def get_config():
    return with_overrides(default_config(), {
        "name": "paper-3072",
        "embedder.kind": "openai", "embedder.dim": 3072, "embedder.model": "text-embedding-3-large",
    })
