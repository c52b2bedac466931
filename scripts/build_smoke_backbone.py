"""Build the smoke backbone (a tiny open_clip CLIP pre-trained on synthetic shapes) that ships in bench/assets/.

    python scripts/build_smoke_backbone.py                      # rebuild the shipped asset in bench/assets/smoke_tiny
    python scripts/build_smoke_backbone.py --out DIR --eval /tmp/smoke-data
    python scripts/build_smoke_backbone.py --verify             # rebuild into a temp dir, compare digests

Deterministic: the same recipe (bench/smoke_backbone.py), steps and seed give the same weights file, byte
for byte, on the same torch build (pre-training runs on one CPU thread). `--eval` generates the smoke
datasets under the given root and prints zero-shot and 16-shot probe top-1 of the built model (loaded
through the same verified, expanded local-dir the benchmark uses): the numbers that show whether the
smoke suite leaves few-shot methods room to improve. The bench run itself never trains this model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import open_clip  # noqa: E402

from bench.data.cards import card_names, load_card  # noqa: E402
from bench.data.synthetic import ensure_generated  # noqa: E402
from bench.smoke_backbone import (ASSET_DIR, DEFAULT_STEPS, build_smoke_backbone, ensure_smoke_backbone,  # noqa: E402
                                  read_asset, smoke_accuracy)


def evaluate(asset_dir: Path, data_root: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        local = ensure_smoke_backbone(Path(tmp) / "tiny-clip", asset_dir=asset_dir)
        model = open_clip.create_model(f"local-dir:{local}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{local}")
        out = {}
        for name in [n for n in card_names() if load_card(n).synthetic]:
            card = load_card(name)
            ensure_generated(card, data_root)
            out[name] = smoke_accuracy(model, tokenizer, card, data_root)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSET_DIR, help=f"output folder (default: {ASSET_DIR})")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="pre-training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", type=int, default=None, help="pre-training images (default: from --steps)")
    parser.add_argument("--eval", type=Path, default=None, metavar="DATA_ROOT",
                        help="generate the smoke datasets here and report accuracies")
    parser.add_argument("--eval-only", action="store_true", help="do not build; evaluate --out as it is")
    parser.add_argument("--verify", action="store_true",
                        help="rebuild into a temp dir and check the digest equals the asset in --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)  # open_clip logs chatty INFO lines on the root logger
    start = time.time()
    if args.verify:
        shipped = read_asset(args.out)
        with tempfile.TemporaryDirectory() as tmp:
            build = shipped.get("build", {})
            rebuilt = build_smoke_backbone(Path(tmp), steps=build.get("steps", args.steps),
                                           seed=build.get("seed", args.seed), pool=build.get("pool"))
        same = rebuilt["weights_sha256"] == shipped["weights_sha256"]
        print(f"rebuilt in {time.time() - start:.0f}s: sha256 {rebuilt['weights_sha256']} "
              f"{'==' if same else '!='} shipped {shipped['weights_sha256']}")
        raise SystemExit(0 if same else 1)
    if not args.eval_only:
        manifest = build_smoke_backbone(args.out, steps=args.steps, seed=args.seed, pool=args.pool)
        size = (args.out / manifest["weights_file"]).stat().st_size
        print(f"smoke backbone written to {args.out} in {time.time() - start:.0f}s ({size / 1e6:.2f} MB): "
              f"sha256 {manifest['weights_sha256']}; {json.dumps(manifest['build'])}")
    if args.eval:
        for name, acc in evaluate(args.out, args.eval).items():
            print(name, json.dumps(acc))


if __name__ == "__main__":
    main()
