"""A loaded model behind ``/predict``: its card's input spec, a forward pass, the answer.

No Ray and no HTTP here: the replica (the adapter) decodes request bodies against
:attr:`Predictor.spec`, runs :meth:`Predictor.infer` in its inference thread through the
micro-batcher, and sends :meth:`Predictor.answer` as JSON. A classifier answers its top-k
labels with probabilities (and, as before, the top class index and its probability as
``class`` / ``score``); any other model answers its raw output. Every answer names the
model and the version that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.serving.payload import InputSpec, TokenizeFn
from edgewise.serving.runtime.batching import Outputs

if TYPE_CHECKING:
    from edgewise.registry import LoadedModel, ModelCard

DEFAULT_TOP_K = 3
DEFAULT_VOCAB_SIZE = 30522


def input_spec(card: ModelCard, *, zoo: bool = False) -> InputSpec:
    """What ``/predict`` accepts for a model, from its card.

    Parameters
    ----------
    card : ModelCard
        The model's card: input kind, shape, dtype, preprocessing, tokenizer.
    zoo : bool
        A built-in zoo model: requests are decoded exactly as before model cards
        existed (images normalised with the payload's fixed mean and std), so that zoo
        clients get the answers they always got.

    Returns
    -------
    InputSpec
        Images carry the card's ``preprocess_image``; texts the card's tokenizer when it
        names a tokenizer directory (the word-hash tokenizer otherwise).
    """
    spec = card.input
    shape = tuple(int(d) for d in spec.shape)
    if zoo:
        return InputSpec(spec.kind, shape, dtype=spec.dtype)
    if spec.kind == "image":
        return InputSpec("image", shape, dtype="float32", image_fn=card.preprocess_image)
    if spec.kind == "text":
        vocab = DEFAULT_VOCAB_SIZE
        tokenize: TokenizeFn | None = None
        if spec.tokenizer:
            tokenize, vocab = load_tokenizer(str(spec.tokenizer), shape[0])
        return InputSpec("text", shape, vocab_size=vocab, dtype="int64", tokenize=tokenize)
    return InputSpec("tensor", shape, dtype=str(spec.dtype or "float32"))


def load_tokenizer(directory: str, seq_len: int) -> tuple[TokenizeFn, int]:
    """A Hugging Face tokenizer from a local directory (never the hub) and its vocab size."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)

    def tokenize(text: str) -> list[int]:
        return [int(i) for i in tok(text, truncation=True, max_length=seq_len)["input_ids"]]

    return tokenize, len(tok)


class Predictor:
    """Run one loaded model on decoded batches and shape its answers.

    Parameters
    ----------
    model : LoadedModel
        The model (a zoo model or a registered or file model).
    top_k : int
        How many labels a classifier answers per sample.
    """

    def __init__(self, model: LoadedModel, top_k: int = DEFAULT_TOP_K) -> None:
        self.model = model
        self.top_k = int(top_k)
        self.spec = input_spec(model.card, zoo=model.format == "zoo")
        self.classifier = model.card.task == "classification"
        self._index = {str(label): i for i, label in enumerate(model.card.labels or ())}

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int | None:
        return self.model.version

    def warm_batch(self) -> np.ndarray:
        """A valid batch of one sample (zeros), to warm the model before serving."""
        return np.zeros((1, *self.spec.shape), dtype=np.dtype(self.spec.dtype or "float32"))

    def infer(self, batch: np.ndarray) -> Outputs:
        """One forward pass: per-sample results for the micro-batcher to split.

        A classifier gives ``(classes, scores, tops)``; any other model ``(outputs,)``.
        """
        if not self.classifier:
            out = np.asarray(self.model.forward(batch))
            return (out.tolist(),)
        tops = self.model.top_k(batch, self.top_k)
        classes = [self._class_of(top[0][0]) for top in tops]
        scores = [round(float(top[0][1]), 5) for top in tops]
        return classes, scores, tops

    def _class_of(self, label: str) -> int | str:
        """The output index of ``label`` (a card without labels answers indices)."""
        index = self._index.get(str(label))
        if index is None and str(label).isdigit():
            return int(label)
        return label if index is None else index

    def answer(self, outputs: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """The JSON answer to one request, from its slice of :meth:`infer`'s results."""
        doc: dict[str, Any] = {"model": self.name, "version": self.version}
        if not self.classifier:
            doc["output"] = list(outputs[0])
            return doc
        classes, scores, tops = outputs
        doc["class"] = list(classes)
        doc["score"] = list(scores)
        doc["top"] = [
            [{"label": str(label), "score": float(prob)} for label, prob in top] for top in tops
        ]
        return doc
