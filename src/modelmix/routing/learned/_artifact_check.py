"""Checks that a router artifact is sane before and after its arrays are loaded.

:func:`check_array_headers` reads only the header of every ``.npy`` member of
``embeddings.npz`` and ``model.npz`` (shape, dtype; a few hundred bytes each) and refuses
arrays too large to be a router, before anything is decompressed: an 18 MB ``.npz`` of
zeros can otherwise expand to gigabytes of memory. :func:`check_consistency` then checks
that the loaded arrays fit together (table rows cover the tokenizer's vocabulary, every
model array's dimensions agree with the table's width, the feature counts, the number of
models and the domains), so a broken artifact fails at load time with a
:class:`~modelmix.errors.ConfigError` naming what is inconsistent instead of failing
every request later.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelmix.errors import ConfigError

__all__ = ["MAX_ARRAY_BYTES", "MAX_DIM", "MAX_VOCAB_ROWS", "check_array_headers",
           "check_consistency", "check_values"]

#: Rows of the token table at most. WordPiece/BPE vocabularies are 30k (MiniLM, BERT)
#: to 256k (Gemma); 1M leaves room for any real tokenizer.
MAX_VOCAB_ROWS = 1_000_000
#: Width of the token table at most: static embeddings are 64-1024 wide, the widest
#: common transformer hidden sizes 4096.
MAX_DIM = 4096
#: Bytes of all arrays of an artifact, decompressed, at most. The shipped default holds
#: about 20 MB; 512 MiB bounds what one reload may add to the gateway's memory.
MAX_ARRAY_BYTES = 512 * 1024 * 1024
#: The ``.npz`` files whose arrays are checked.
_NPZ_FILES = ("embeddings.npz", "model.npz")


def _member_header(archive: zipfile.ZipFile, name: str, file: Path
                   ) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) of one ``.npy`` member, read from its header only."""
    fmt = np.lib.format
    with archive.open(name) as fp:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:  # 3.0 is only written for structured dtypes with non-latin-1 names
            raise ConfigError(f"{file}: {name}: unsupported .npy version {version}")
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _npz_headers(file: Path) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """Shape and dtype of every array of one ``.npz`` file, keyed by array name."""
    try:
        with zipfile.ZipFile(file) as archive:
            return {name.removesuffix(".npy"): _member_header(archive, name, file)
                    for name in archive.namelist() if name.endswith(".npy")}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"{file}: unreadable array file ({exc})"[:500]) from None


def check_array_headers(directory: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the artifact's arrays (``table`` and the ``model.npz`` names), read
    from their headers, after checking them against :data:`MAX_VOCAB_ROWS`,
    :data:`MAX_DIM` and :data:`MAX_ARRAY_BYTES`. Missing files are left to the loader.

    Raises:
        ConfigError: an unreadable header, an object (pickled) array, a token table that
            is not 2-D or beyond the row/width bounds, or arrays beyond the byte bound.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    total = 0
    for filename in _NPZ_FILES:
        file = directory / filename
        if not file.is_file():
            continue
        for name, (shape, dtype) in _npz_headers(file).items():
            if dtype.hasobject:
                raise ConfigError(f"{file}: array {name!r} holds Python objects (pickle); "
                                  "router arrays are numbers only")
            total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            shapes[name] = shape
    table = shapes.get("table")
    if table is not None:
        if len(table) != 2:
            raise ConfigError(f"{directory}: the token table is {len(table)}-D, not "
                              "(vocab, dim)")
        if table[0] > MAX_VOCAB_ROWS or table[1] > MAX_DIM:
            raise ConfigError(f"{directory}: the token table is {table[0]:,} x {table[1]:,}; "
                              f"at most {MAX_VOCAB_ROWS:,} rows x {MAX_DIM:,} wide")
    if total > MAX_ARRAY_BYTES:
        raise ConfigError(f"{directory}: the router's arrays take {total / 2**20:,.0f} MiB "
                          f"decompressed; at most {MAX_ARRAY_BYTES / 2**20:,.0f} MiB")
    return shapes


def _expect(found: Mapping[str, tuple[int, ...]], name: str, want: tuple[int | None, ...],
            why: str) -> None:
    """``found[name]`` has shape ``want`` (None: any size on that axis)."""
    shape = found.get(name)
    if shape is None:
        raise ConfigError(f"model array {name!r} is missing")
    if len(shape) != len(want) or any(w is not None and s != w
                                      for s, w in zip(shape, want, strict=True)):
        shown = ", ".join("*" if w is None else str(w) for w in want)
        shown = f"({shown},)" if len(want) == 1 else f"({shown})"
        raise ConfigError(f"model array {name!r} is {shape}, expected {shown} ({why})")


def _learner_shapes(learner: str, k: int, m: int, f: int, dim: int
                    ) -> list[tuple[str, tuple[int | None, ...]]]:
    """The learner arrays and their shapes (None: free, checked against each other)."""
    if learner == "logreg":
        return [("coef", (None, m, f)), ("intercept", (None, m)), ("gate", (k, None))]
    if learner == "mf":
        return [("proj", (None, f)), ("vectors", (m, None)), ("bias", (m,))]
    return [("bank", (None, dim)), ("outcomes", (None, m)), ("prior", (None, m)),
            ("k", ()), ("shrink", ())]


def check_consistency(*, vocab_size: int, table: tuple[int, ...],
                      arrays: Mapping[str, tuple[int, ...]], learner: str,
                      models: int, lexical: int, domains: list[str] | None) -> None:
    """Check that a router's arrays fit together (docs of
    :class:`~modelmix.routing.learned._model.RouterModel` give each shape).

    Args:
        vocab_size: the tokenizer's vocabulary (ids are below it).
        table: the token table's shape ``(rows, dim)``.
        arrays: shapes of ``model.npz``'s arrays, learner arrays without their
            ``learner_`` prefix.
        learner: ``logreg``, ``mf`` or ``knn``.
        models: ``M``, the number of models of the manifest.
        lexical: raw lexical (and structure) features per prompt.
        domains: the manifest's domain list, None when it lists none.

    Raises:
        ConfigError: the first inconsistency found, naming the array and both sizes.
    """
    rows, dim = table
    if rows < vocab_size:
        raise ConfigError(f"the token table has {rows:,} rows for a tokenizer of "
                          f"{vocab_size:,} tokens (embeddings.npz truncated?)")
    f0 = dim + lexical
    why0 = f"table width {dim} + {lexical} lexical features"
    _expect(arrays, "domain_coef", (None, f0), why0)
    k = arrays["domain_coef"][0]
    if domains is not None and len(domains) != k:
        raise ConfigError(f"model array 'domain_coef' has {k} domains, the manifest "
                          f"lists {len(domains)}")
    per_model = models if k else None  # no domains: no target encoding, sizes unused
    base: list[tuple[str, tuple[int | None, ...], str]] = [
        ("mean", (f0,), why0), ("std", (f0,), why0),
        ("domain_intercept", (k,), f"{k} domains"),
        ("domain_means", (k, per_model), f"{k} domains x {models} models"),
        ("te_mean", (per_model,), f"{models} models"),
        ("te_std", (per_model,), f"{models} models")]
    for name, want, why in base:
        _expect(arrays, name, want, why)
    f = f0 + k + (models if k else 0)
    for name, shape in _learner_shapes(learner, k, models, f, dim):
        _expect(arrays, name, shape, f"{models} models, {f} head features, {k} domains")
    _check_learner_links(arrays, learner, vocab_size)


def _check_learner_links(arrays: Mapping[str, tuple[int, ...]], learner: str,
                         vocab_size: int) -> None:
    """Sizes the learner arrays share among themselves (sources, rank, bank rows,
    token features)."""
    if learner == "logreg":
        s = arrays["coef"][0]
        _expect(arrays, "intercept", (s, None), f"{s} sources")
        _expect(arrays, "gate", (None, s), f"{s} sources")
        if "tok_coef" in arrays:
            _expect(arrays, "tok_coef", (s, arrays["coef"][1], None), f"{s} sources")
            size = arrays["tok_coef"][2]
            _expect(arrays, "tok_idf", (size,), "one IDF per token feature")
            _expect(arrays, "tok_vocab", (), "a scalar")
            _expect(arrays, "tok_buckets", (), "a scalar")
    elif learner == "mf":
        r = arrays["proj"][0]
        _expect(arrays, "vectors", (None, r), f"rank {r}")
    else:
        n = arrays["bank"][0]
        _expect(arrays, "outcomes", (n, None), f"{n} bank rows")


def check_values(values: Mapping[str, Any], vocab_size: int) -> None:
    """The learner's scalars: ``tok_vocab + tok_buckets`` is the token feature count and
    ``tok_vocab`` covers the tokenizer (ids at or above it would be read as bigram
    buckets); a knn router has a non-empty bank and ``k >= 1``.

    Raises:
        ConfigError: one of these does not hold.
    """
    if "tok_coef" in values:
        vocab, buckets = int(values["tok_vocab"]), int(values["tok_buckets"])
        size = int(values["tok_coef"].shape[2])
        if vocab < vocab_size or vocab + buckets != size:
            raise ConfigError(f"token features: tok_vocab {vocab:,} + tok_buckets "
                              f"{buckets:,} must equal tok_coef's {size:,}, and tok_vocab "
                              f"cover the tokenizer's {vocab_size:,} tokens")
    if "bank" in values and (int(values["k"]) < 1 or values["bank"].shape[0] < 1):
        raise ConfigError("knn router: needs k >= 1 and at least one bank row")
