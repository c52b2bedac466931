"""Build the smoke backbone (a tiny open_clip CLIP pre-trained on synthetic shapes) and report how good it is.

    python scripts/make_smoke_backbone.py                       # into $BENCH_CACHE/smoke/tiny-clip
    python scripts/make_smoke_backbone.py --out DIR --eval /tmp/smoke-data

--eval generates every smoke dataset under the given root and prints zero-shot and 16-shot probe top-1,
the numbers that show whether the smoke suite leaves few-shot methods room to improve.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import open_clip

from bench.data.cards import card_names, load_card
from bench.data.synthetic import ensure_generated
from bench.smoke_backbone import DEFAULT_STEPS, build_smoke_backbone, ensure_smoke_backbone, smoke_accuracy, \
    smoke_backbone_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: $BENCH_CACHE/smoke/tiny-clip)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="pre-training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching build exists")
    parser.add_argument("--eval", type=Path, default=None, metavar="DATA_ROOT",
                        help="generate the smoke datasets here and report accuracies")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)  # open_clip logs chatty INFO lines on the root logger
    out = (args.out or smoke_backbone_dir()).expanduser()
    start = time.time()
    if args.force:
        build_smoke_backbone(out, steps=args.steps, seed=args.seed)
    else:
        ensure_smoke_backbone(out, steps=args.steps, seed=args.seed)
    info = json.loads((out / "open_clip_config.json").read_text())["bench_smoke"]
    print(f"smoke backbone at {out} (this call {time.time() - start:.1f}s): {json.dumps(info)}")
    if args.eval:
        model = open_clip.create_model(f"local-dir:{out}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
        for name in [n for n in card_names() if load_card(n).synthetic]:
            card = load_card(name)
            ensure_generated(card, args.eval)
            print(name, json.dumps(smoke_accuracy(model, tokenizer, card, args.eval)))


if __name__ == "__main__":
    main()
