"""The paper's setup: OpenAI text-embedding-3-large (3072-d) embeddings, cached by `salesrl embed`.

    OPENAI_API_KEY=... salesrl embed --data DATA --out runs/arrays-3072 --embedder.kind openai --embedder.dim 3072
    salesrl train --config configs/paper_3072.py --data.train runs/arrays-3072
"""

import dataclasses

from configs.default import get_config as default_config
from salesrl_jax.embed.config import EmbedderConfig


def get_config():
    config = default_config()
    return dataclasses.replace(config, name="paper-3072",
                               embedder=EmbedderConfig(kind="openai", dim=3072, model="text-embedding-3-large"))
