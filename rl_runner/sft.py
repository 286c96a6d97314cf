"""SFT warm-start: next-token loss on assistant tokens only (system, question and tool observations masked).

`python -m rl_runner.sft --traces runs/traces/sft_traces.json --model tiny --out runs/sft` trains on traces in
the paper's SFT layout (ours from `rl_runner.traces`, or the released PixelReasoner-SFT-Data) and saves a
checkpoint that loads with `AutoModelForImageTextToText.from_pretrained`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from agents.chat import load_processor
from rl_runner.algorithms import clipped_update, forward_logprobs, masked_mean_nll, trained_parameters
from rl_runner.conversation import EncodedConversation, batch_conversations, encode_conversation
from rl_runner.diagnostics import LossSplit, kind_indices, split_losses
from rl_runner.pretrain import resolve_model
from rl_runner.traces import load_traces


def masked_nll(
    model: PreTrainedModel, conversations: Sequence[EncodedConversation], pad_id: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, loss mask, per-token log-probs and the mean negative log-likelihood over the assistant tokens."""
    inputs, mask = batch_conversations(conversations, pad_id)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    logprobs, _ = forward_logprobs(model, inputs)
    mask = mask.to(device).float()
    return inputs, mask, logprobs, masked_mean_nll(logprobs, mask)


def train_sft(
    model: PreTrainedModel, processor: ProcessorMixin, chats: Sequence[list[dict[str, Any]]], epochs: int, lr: float,
    batch_size: int, seed: int = 0, progress: bool = True, desc: str = "SFT", train_tower: bool = False,
) -> list[dict[str, float]]:
    """Fine-tune `model` in place (its vision tower too only if `train_tower`); per step the loss and its split
    by token kind (`rl_runner.diagnostics`)."""
    encoded = [encode_conversation(processor, chat) for chat in chats]
    if not encoded:
        raise ValueError("no SFT conversations to train on")
    pad_id = processor.tokenizer.pad_token_id or 0
    optimizer = torch.optim.AdamW(trained_parameters(model, train_tower), lr=lr)
    rng = np.random.default_rng(seed)
    log = []
    steps = epochs * -(-len(encoded) // batch_size)
    model.train()
    with tqdm(total=steps, desc=desc, disable=not progress) as bar:
        for _ in range(epochs):
            order = rng.permutation(len(encoded))
            for start in range(0, len(order), batch_size):
                inputs, mask, logprobs, loss = masked_nll(
                    model, [encoded[i] for i in order[start : start + batch_size]], pad_id
                )
                clipped_update(optimizer, loss)
                split = LossSplit()
                split.add(split_losses(kind_indices(processor.tokenizer, inputs["input_ids"], mask), logprobs.detach()))
                log.append({"loss": float(loss.detach()), **split.means()})
                bar.update()
                bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
    model.eval()
    return log


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoModelForImageTextToText

    parser = argparse.ArgumentParser(description="SFT warm-start on multi-turn tool-call traces.")
    parser.add_argument("--traces", required=True, help="traces JSON in the paper's SFT layout")
    parser.add_argument("--model", default="tiny", help="'tiny' (pretrained base), 'tiny-random', a hub id or a path")
    parser.add_argument("--out", default="runs/sft")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-tower", action="store_true", help="train the vision tower too")
    args = parser.parse_args(argv)
    path = resolve_model(args.model, Path(args.out).parent / ".tiny-models", args.seed)
    torch.manual_seed(args.seed)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    processor = load_processor(path)
    chats = [record["message_list"] for record in load_traces(args.traces)]
    log = train_sft(model, processor, chats, args.epochs, args.lr, args.batch_size, args.seed,
                    train_tower=args.train_tower)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f"SFT: {len(log)} steps, loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}; saved to {args.out}")


if __name__ == "__main__":
    main()
