"""The optional local embedder: skipped unless the `local` extra (sentence-transformers) is installed."""

import numpy as np
import pytest

st = pytest.importorskip("sentence_transformers")
transformers = pytest.importorskip("transformers")

from salesrl_jax.embed.config import EmbedderConfig  # noqa: E402
from salesrl_jax.embed.sentence_transformers_embedder import SentenceTransformersEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny randomly initialised BERT saved in sentence-transformers layout: no download."""
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("st")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "price", "is", "too", "high", "sounds", "good", "?"]
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    bert_dir = root / "bert"
    transformers.BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    word = st.models.Transformer(str(bert_dir))
    pooling = st.models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model_path = root / "tiny-model"
    st.SentenceTransformer(modules=[word, pooling], device="cpu").save(str(model_path))
    return model_path


def test_local_model_embeds_offline_with_an_identity(model_dir):
    embedder = SentenceTransformersEmbedder(model_dir)
    vectors = embedder.embed(["the price is too high", "sounds good?"])
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(embedder.embed(["sounds good?"])[0], vectors[1], rtol=1e-5, atol=1e-6)
    assert embedder.identity.kind == "sentence-transformers" and embedder.identity.dim == 32
    assert EmbedderConfig(kind="sentence-transformers", dim=32, model_path=model_dir).build().identity == embedder.identity
    with pytest.raises(ValueError, match="set embedder.dim=32"):
        EmbedderConfig(kind="sentence-transformers", dim=64, model_path=model_dir).build()


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        SentenceTransformersEmbedder(tmp_path / "absent")
