"""The usual hand-written handler, kept only as the benchmark's baseline.

It serves the same run directory the way TorchServe's Hugging Face example and most
hand-rolled handlers do: one request per forward pass, every text padded to max_length,
and the two levels run as separate calls. benchmarks/bench.py archives it with batchSize 1
and measures it exactly like the real handler. Not for production use.
"""

from __future__ import annotations

import json
import os

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class NaiveCascadeHandler:
    def initialize(self, context) -> None:
        model_dir = context.system_properties["model_dir"]
        settings = (context.model_yaml_config or {}).get("handler", {}) or {}
        torch.set_num_threads(int(settings.get("threads", 1)))
        with open(os.path.join(model_dir, "hierarchy.json")) as handle:
            self.hierarchy = json.load(handle)
        self.tokenizer = AutoTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"))
        self.models = {}
        folders = [self.hierarchy["taxonomy"]["checkpoint"]]
        folders += [lvl["checkpoint"] for lvl in self.hierarchy["subtaxonomies"].values() if lvl["checkpoint"]]
        for folder in folders:
            self.models[folder] = AutoModelForSequenceClassification.from_pretrained(
                os.path.join(model_dir, folder)).eval()
        self.max_length = int(self.hierarchy["text"]["max_length"])

    def classify(self, folder: str, labels: list[str], text: str) -> tuple[str, float]:
        inputs = self.tokenizer(text, padding="max_length", truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(self.models[folder](**inputs).logits, dim=-1)[0]
        best = int(probs.argmax())
        return labels[best], float(probs[best])

    def handle(self, data, context):
        answers = []
        for request in data:
            body = request.get("body") or request.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body.decode("utf-8"))
            text = ". ".join(str(body.get(k, "")).strip() for k in ("title", "description") if body.get(k))
            text = body.get("text", text)
            tax = self.hierarchy["taxonomy"]
            tax_label, tax_score = self.classify(tax["checkpoint"], tax["labels"], text)
            sub = self.hierarchy["subtaxonomies"][tax_label]
            if sub["checkpoint"]:
                sub_label, sub_score = self.classify(sub["checkpoint"], sub["labels"], text)
            else:
                sub_label, sub_score = sub["labels"][0], 1.0
            answers.append(json.dumps({"path": [tax_label, sub_label], "path_score": tax_score * sub_score}))
        return answers
