"""Text hook for the reference server (its PREPROCESS_MODULE) serving models/sentiment.

The reference's app.py calls `postprocess(session.run(None, preprocess(text, input_meta)))`
for POST /predict. This module tokenises as inferd does (src/model/text.rs): the model's own
tokenizer.json with the HF `tokenizers` library, special tokens added, no padding, no
truncation, and feeds the three int64 [1, tokens] inputs the ONNX graph declares
(input_ids, attention_mask of ones, token_type_ids of zeros). The answer has inferd's
/predict shape: {"label", "score", "scores": {label: probability}}.

Env BENCH_SENTIMENT_DIR overrides the model folder (default: ../../models/sentiment).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

MODEL_DIR = Path(os.environ.get("BENCH_SENTIMENT_DIR",
                                Path(__file__).resolve().parents[2] / "models" / "sentiment"))
LABELS = ["negative", "positive"]  # models/sentiment/model.toml

TOKENIZER = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
TOKENIZER.no_padding()
TOKENIZER.no_truncation()


def preprocess(text: str, input_meta) -> dict[str, np.ndarray]:
    # input_meta is the graph's first input only; the names of all three are fixed by the model.
    ids = np.asarray([TOKENIZER.encode(text, add_special_tokens=True).ids], dtype=np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }


def postprocess(outputs: list[np.ndarray], output_names: list[str]):
    probabilities = outputs[output_names.index("probabilities")][0]
    best = int(np.argmax(probabilities))
    return {
        "label": LABELS[best],
        "score": float(probabilities[best]),
        "scores": {label: float(p) for label, p in zip(LABELS, probabilities)},
    }
