"""English text that packages ship, split into what trains and what only evaluates.

Sources (nothing is downloaded; each one that is not installed is left out, and ``available()`` says so):

- gensim's test data (PyPI ``gensim``): ``lee.cor``, the 50 ABC news documents of Lee et al. (2005) with
  ``similarities0-1.txt``, their 50x50 mean human similarity ratings: **evaluation only, never trained on**;
  ``lee_background.cor``, 300 more ABC news documents: 270 train, the last 30 are held out.
- WordNet 3.0 glosses (Debian ``wordnet-base``, /usr/share/wordnet): 117,659 definitions, often with
  example sentences; every synset whose offset is a multiple of 50 is held out.
- Jane Austen's six novels (Debian ``r-cran-janeaustenr``, unpacked without R, read with PyPI ``rdata``):
  five train, *Persuasion* is held out.

Held-out text is split once more: ``heldout("val")`` chooses ranks (the importance table), ``heldout("test")``
scores fitted models, so no score a model is reported with took part in choosing it.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import random
import re
import zlib
from functools import lru_cache
from pathlib import Path

WORDNET = Path(os.environ.get("WORDNET_DIR", "/usr/share/wordnet"))
# Where the janeaustenr R package may be: installed with R, or unpacked from its .deb
# (apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb /opt/janeaustenr).
AUSTEN_DIRS = [os.environ.get("JANEAUSTENR_DIR", ""), "/usr/lib/R/site-library/janeaustenr",
               "/opt/janeaustenr/usr/lib/R/site-library/janeaustenr"]
AUSTEN_HELD_OUT = "persuasion"
LEE_BACKGROUND_HELD_OUT = 30     # the last 30 of the 300 background documents
WORDNET_HELD_OUT_EVERY = 50      # synsets whose offset is a multiple of this


def gensim_data() -> Path | None:
    """gensim/test/test_data, found without importing gensim (its import pulls scipy)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"
    return folder if (folder / "lee.cor").is_file() else None


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+(?=[\"'\u201c\u2018(]*[A-Z0-9])")


def sentences(text: str, min_words: int = 4) -> list[str]:
    """A plain splitter on ., ! and ? followed by a capital: good enough for news and novels."""
    text = " ".join(text.split())
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.split()) >= min_words]


# ---- Lee et al. (2005) -----------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def lee_documents() -> list[str]:
    """The 50 Lee documents (evaluation only). lee.cor is Latin-1 (a pound sign), one document per line."""
    folder = _need_gensim()
    return [line.strip() for line in (folder / "lee.cor").read_text(encoding="latin-1").splitlines() if line.strip()]


@lru_cache(maxsize=None)
def lee_human_similarity():
    """The 50x50 mean human ratings (upper triangle filled; the diagonal is 1)."""
    import numpy as np

    return np.loadtxt(_need_gensim() / "similarities0-1.txt")


@lru_cache(maxsize=None)
def lee_background() -> list[str]:
    folder = _need_gensim()
    return [line.strip() for line in (folder / "lee_background.cor").read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _need_gensim() -> Path:
    folder = gensim_data()
    if folder is None:
        raise FileNotFoundError("gensim's test data is not installed: pip install gensim")
    return folder


# ---- WordNet glosses -------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def wordnet_glosses() -> tuple[list[str], list[str]]:
    """(train, held out) glosses: the text after ' | ' of every synset line, quotes and spacing tidied."""
    train, held = [], []
    for part in ("noun", "verb", "adj", "adv"):
        path = WORDNET / f"data.{part}"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue   # the licence header
                gloss = " ".join(line.split(" | ", 1)[1].split()).replace('"', "")
                if len(gloss.split()) < 3:
                    continue
                gloss = gloss[0].upper() + gloss[1:] + ("" if gloss.endswith((".", "!", "?")) else ".")
                (held if int(line[:8]) % WORDNET_HELD_OUT_EVERY == 0 else train).append(gloss)
    return train, held


# ---- Jane Austen -----------------------------------------------------------------------------------------

def austen_dir() -> Path | None:
    for folder in AUSTEN_DIRS:
        if folder and (Path(folder) / "data" / "Rdata.rdb").is_file():
            return Path(folder)
    return None


@lru_cache(maxsize=None)
def austen_novels() -> dict[str, list[str]]:
    """novel name -> its sentences. The R lazy-load database read with PyPI ``rdata``: the index (.rdx) is
    a gzipped R object mapping each variable to (offset, length) in the .rdb; each blob is a 4-byte length
    and a zlib stream of one serialized character vector (the novel's lines)."""
    folder = austen_dir()
    if folder is None:
        return {}
    try:
        import rdata
    except ImportError:
        return {}
    import warnings
    data = folder / "data"
    def parse(raw: bytes):
        with warnings.catch_warnings():   # "Unknown file type: assumed RDS": these are bare serializations
            warnings.simplefilter("ignore")
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = parse(gzip.decompress((data / "Rdata.rdx").read_bytes()))
    blob = (data / "Rdata.rdb").read_bytes()
    novels = {}
    for name, (offset, length) in index["variables"].items():
        raw = blob[int(offset):int(offset) + int(length)]
        lines = [str(s) for s in parse(zlib.decompress(raw[4:]))]
        paragraphs = " ".join(line if line.strip() else "\n" for line in lines).split("\n")
        novels[str(name)] = [s for p in paragraphs if not _heading(p) for s in sentences(p)]
    return novels


def _heading(paragraph: str) -> bool:
    text = paragraph.strip()
    return not text or text.isupper() or text.lower().startswith(("chapter", "volume"))


# ---- the splits ------------------------------------------------------------------------------------------

def available() -> dict[str, bool]:
    return {"gensim (Lee)": gensim_data() is not None, "wordnet-base": (WORDNET / "data.noun").is_file(),
            "janeaustenr": bool(austen_novels())}


@lru_cache(maxsize=None)
def training_sources() -> dict[str, list[list[str]]]:
    """source -> documents (lists of consecutive sentences) that may be trained on. Never Lee-50, never held out."""
    sources = {}
    if gensim_data() is not None:
        docs = lee_background()[:-LEE_BACKGROUND_HELD_OUT]
        sources["lee-background"] = [sentences(d) for d in docs]
    train, _ = wordnet_glosses()
    if train:
        sources["wordnet"] = [train[i:i + 64] for i in range(0, len(train), 64)]   # neighbours are related senses
    novels = austen_novels()
    if novels:
        sources["austen"] = [s[i:i + 64] for name, s in novels.items() if name != AUSTEN_HELD_OUT
                             for i in range(0, len(s), 64)]
    if not sources:
        raise FileNotFoundError("no training text is installed: pip install gensim (and apt-get install wordnet-base)")
    return sources


@lru_cache(maxsize=None)
def _heldout_sources() -> dict[str, list[str]]:
    sources = {}
    if gensim_data() is not None:
        sources["lee-background"] = [s for d in lee_background()[-LEE_BACKGROUND_HELD_OUT:] for s in sentences(d)]
    _, held = wordnet_glosses()
    if held:
        sources["wordnet"] = held
    novels = austen_novels()
    if AUSTEN_HELD_OUT in novels:
        sources["austen"] = novels[AUSTEN_HELD_OUT]
    return sources


def heldout(split: str = "test", n: int = 256) -> list[str]:
    """``n`` held-out sentences, taken in turn from each installed source (a fixed shuffle, seed 0).

    ``"val"`` and ``"test"`` are disjoint halves of every source: val chooses ranks, test scores models.
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    pools = []
    for name, items in sorted(_heldout_sources().items()):
        items = list(items)
        random.Random(f"heldout-{name}").shuffle(items)
        pools.append(items[0::2] if split == "val" else items[1::2])
    if not pools:
        raise FileNotFoundError("no held-out text is installed: pip install gensim")
    out, depth = [], 0
    while len(out) < n and any(depth < len(p) for p in pools):
        out += [p[depth] for p in pools if depth < len(p)]
        depth += 1
    return out[:n]


class Passages:
    """An endless, seeded stream of training passages: 1 to ``max_sentences`` consecutive sentences of one
    document from a source drawn uniformly (so the small news corpus weighs as much as the novels)."""

    def __init__(self, seed: int = 0, max_sentences: int = 6):
        self.sources = training_sources()
        self.names = sorted(self.sources)
        self.rng = random.Random(seed)
        self.max_sentences = max_sentences

    def __iter__(self):
        return self

    def __next__(self) -> str:
        docs = self.sources[self.rng.choice(self.names)]
        doc = self.rng.choice(docs)
        while not doc:
            doc = self.rng.choice(docs)
        count = self.rng.randint(1, self.max_sentences)
        start = self.rng.randrange(max(1, len(doc) - count + 1))
        return " ".join(doc[start:start + count])

    def batch(self, size: int) -> list[str]:
        return [next(self) for _ in range(size)]


def describe() -> str:
    sources = training_sources()
    counts = {name: sum(len(d) for d in docs) for name, docs in sources.items()}
    held = {name: len(items) for name, items in _heldout_sources().items()}
    missing = [name for name, ok in available().items() if not ok]
    return (f"training sentences {counts}; held out {held}"
            + (f"; not installed: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    print(available())
    print(describe())
    for s in heldout("test", 6):
        print(" test:", s[:120])
    stream = Passages()
    for _ in range(4):
        print(" train:", next(stream)[:160])
