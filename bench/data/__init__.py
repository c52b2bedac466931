"""Data layer: dataset cards, split readers, the few-shot sampler, transforms and the doctor.

`datasets/` at the repo root holds the cards (TOML data). It is deliberately not a Python package,
so `import datasets` keeps meaning Hugging Face's library. They install as package data through the
link `bench/cards` → `../datasets` and are read from there (bench.data.cards.cards_dir).
"""

from bench.data.cards import DatasetCard, card_names, load_card, prompt_classname
from bench.data.doctor import DatasetHealth, check_dataset, ensure_usable
from bench.data.fewshot import FewShot, holdout_val, load_coop_fewshot_pickle, sample_fewshot
from bench.data.items import DatasetSplits, Item
from bench.data.readers import load_splits

__all__ = [
    "Item", "DatasetSplits", "DatasetCard", "load_card", "card_names", "prompt_classname",
    "load_splits", "sample_fewshot", "holdout_val", "FewShot", "load_coop_fewshot_pickle",
    "DatasetHealth", "check_dataset", "ensure_usable",
]
