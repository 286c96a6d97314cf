"""`python -m rl_runner.prepare_verl`: verl data from a built-in suite (RL train/val parquet, SFT traces, YAMLs)."""

from __future__ import annotations

import argparse
import json

from rl_runner.verl_backend.agent_loop import AGENT_NAME
from rl_runner.verl_backend.data import DRY_RUN_ROWS, TOOL_AGENT, SuiteData, dry_run_sample, prepare
from rl_runner.verl_backend.specs import EnvSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rl_runner.prepare_verl", description=__doc__)
    parser.add_argument("--suite", default="fine_detail")
    parser.add_argument("--suite-kwargs", type=json.loads, default={}, help="JSON object of suite parameters")
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--val-size", type=int, default=64)
    parser.add_argument("--sft-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--self-correct-fraction", type=float, default=0.3)
    parser.add_argument("--budgets", default="paper_train", help="pixel budget preset of the views")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--agent", choices=(AGENT_NAME, TOOL_AGENT), default=AGENT_NAME)
    parser.add_argument("--out", default="data/verl")
    parser.add_argument("--dry-run", action="store_true",
                        help=f"write at most {DRY_RUN_ROWS} rows per file (a check of the command and the data)")
    args = parser.parse_args(argv)
    data = SuiteData(args.suite, args.suite_kwargs, args.train_size, args.val_size, args.sft_size, args.seed,
                     args.self_correct_fraction)
    if args.dry_run:
        print(f"dry run: at most {DRY_RUN_ROWS} rows per file")
        data = dry_run_sample(data)
    prepared = prepare(args.out, data, EnvSettings(budgets=args.budgets, max_turns=args.max_turns), args.agent,
                       progress=True)
    for name, path in vars(prepared).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
