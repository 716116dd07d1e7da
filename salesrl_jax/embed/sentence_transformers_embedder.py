"""A local sentence-embedding model (optional extra: ``pip install -e '.[local]'``).

The model must already be on disk: it is loaded from a directory with ``local_files_only`` and
the Hugging Face hub is switched off, so nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from salesrl_jax.embed.base import EmbedderIdentity


def _model_fingerprint(path: Path) -> str:
    """A short digest of the model's config files: two copies of one model share an identity, two models do not."""
    digest = hashlib.sha256()
    for name in sorted(p.name for p in path.glob("*.json")):
        digest.update(name.encode() + b"\0" + (path / name).read_bytes())
    return digest.hexdigest()[:12]


class SentenceTransformersEmbedder:
    """Embeddings from a sentence-transformers model in a local directory.

    Args:
      model_path: directory holding the saved model (``SentenceTransformer.save`` layout).
      device: torch device ("cpu" by default).
      normalize: L2-normalise the vectors (what cosine-trained models expect).
    """

    VERSION = "1"

    def __init__(self, model_path: str | os.PathLike[str], device: str = "cpu", normalize: bool = True,
                 batch_size: int = 64):
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no local sentence-transformers model there (nothing is downloaded; "
                                    "save one with SentenceTransformer(...).save(PATH) first)")
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError("the local embedder needs the optional extra: pip install -e '.[local]'") from None
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.normalize = normalize
        self.batch_size = batch_size
        # sentence-transformers 5 renamed the method (the old name warns); 3 and 4 have only the old one.
        dimension = (getattr(self._model, "get_embedding_dimension", None)
                     or self._model.get_sentence_embedding_dimension)
        dim = int(dimension())
        self.identity = EmbedderIdentity("sentence-transformers", f"{path.name}@{_model_fingerprint(path)}", dim,
                                         self.VERSION + ("n" if normalize else ""))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=self.normalize, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
