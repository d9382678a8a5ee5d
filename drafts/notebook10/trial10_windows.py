"""Trials for notebook 10 (quick scale): which arms beat which, across seeds. Usage: trial10.py PART [seeds]"""
import copy
import json
import sys
import time

import torch

from tlteach import bow, classifier, data, presets, study, tasks, ulmfit
from tlteach.classifier import Classifier, encode_texts, freeze, label_batches, measure
from tlteach.encoder import Encoder, encoder_config, mlm_batches
from tlteach.train import EarlyStopping, Measure, TrainConfig, train

PRESET = presets.get_preset(sys.argv[3] if len(sys.argv) > 3 else "quick")
P = study.study_preset(PRESET)
tok = study.tokenizer(P)
T = P.block_size
OUT = f"/tmp/t10/{sys.argv[1]}_{P.name}_w{sys.argv[6] if len(sys.argv) > 6 else 4}.jsonl"


def bodies():
    import os
    path = f"/tmp/t10/bodies_{P.name}.pt"
    if os.path.exists(path):
        saved = torch.load(path, weights_only=False)
        return saved
    out = {"scratch": study.source_model("scratch", P), "shakespeare": study.source_model("shakespeare", P)}
    lm = tasks.task_lm_corpus()
    ids = data.encode_split(lm["train"], tok)
    t0 = time.time()
    m = study.source_model("shakespeare", P)
    cfg = study.continued_config(P)
    cfg.progress = False
    train(m, ids, cfg)
    out["shakespeare+task-lm"] = m
    print("stage 2", time.time() - t0, flush=True)
    t0 = time.time()
    torch.manual_seed(P.seed)
    m2 = study.source_model("scratch", P)
    train(m2, ids, cfg)
    out["task-lm"] = m2
    print("task lm from scratch", time.time() - t0, flush=True)
    t0 = time.time()
    torch.manual_seed(P.seed)
    enc = Encoder(encoder_config(study.model_config(P)))
    src = data.encode_split(data.load_corpus("shakespeare")["train"], tok)
    pc = study.pretrain_config(P)
    pc.progress = False
    train(enc, mlm_batches(src, T, pc.batch_size, enc.mask_id), pc)
    out["encoder"] = enc
    print("encoder", time.time() - t0, flush=True)
    torch.save(out, path)
    return out


class Windows(torch.nn.Module):
    """A classifier reading W windows of T tokens per text: each window pooled, the windows averaged."""

    def __init__(self, clf, W):
        super().__init__()
        self.clf, self.W = clf, W
        self.config = clf.config

    def forward(self, idx, targets=None):
        B = idx.size(0)
        x = idx.view(B * self.W, -1)
        feats = self.clf.features(x).view(B, self.W, -1)
        used = (x != self.clf.pad_id).any(1).view(B, self.W, 1).float()
        logits = self.clf.score((feats * used).sum(1) / used.sum(1).clamp_min(1))
        if targets is None:
            return logits, None
        return logits, torch.nn.functional.cross_entropy(logits, targets.long())


def encode_windows(texts, W):
    x = encode_texts(texts, tok, T * W)  # the first W*T tokens, padded
    return x


WIN = int(sys.argv[6]) if len(sys.argv) > 6 else 4


def run(body, task, n, seed, lr, pooling="mean", trainable="all", steps=400, ulm=False):
    sub = tasks.label_subset(task["train"], n, seed)
    x, y = encode_windows(sub["text"], WIN), torch.tensor(sub["label"])
    xv, yv = encode_windows(task["validation"]["text"], WIN), torch.tensor(task["validation"]["label"])
    xt, yt = encode_windows(task["test"]["text"], WIN), torch.tensor(task["test"]["label"])
    n_classes = task["train"].features["label"].num_classes
    torch.manual_seed(seed)
    clf = Classifier(copy.deepcopy(body), n_classes, pooling, pad_id=tok.eot_id)
    freeze(clf, trainable)
    clf = Windows(clf, WIN)
    stop = EarlyStopping("val", patience=8)
    cfg = TrainConfig(max_iters=steps, batch_size=16, block_size=T, learning_rate=lr, warmup_iters=steps // 10 if ulm else 20,
                      eval_interval=10, progress=False, seed=seed)
    groups = ulmfit.discriminative_groups(clf.clf, 2.6) if ulm else None
    hooks = [ulmfit.Unfreezer(clf.clf, 20)] if ulm else ()
    r = train(clf, label_batches(x, y, 16), cfg, groups=groups, hooks=hooks,
              on_eval=Measure({"val": measure(xv, yv)}, then=stop))
    stop.restore(clf)
    s = classifier.scores(classifier.predict(clf, xt), yt)
    h = r.history
    return dict(test_acc=s["acc"], test_f1=s["f1"], val=stop.best, val_acc=float(h.loc[h["val"].idxmin(), "val_acc"]),
                steps=r.steps, best_step=stop.best_step)


def bow_run(task, n, seed):
    sub = tasks.label_subset(task["train"], n, seed)
    n_classes = task["train"].features["label"].num_classes
    best = None
    for wd in (0.0, 1e-4, 1e-3):
        b = bow.BagOfWords().fit(sub["text"])
        W, c = bow.fit_logistic_regression(b.transform(sub["text"]), sub["label"], n_classes, weight_decay=wd)
        v = bow.accuracy(bow.predict(b.transform(task["validation"]["text"]), W, c), task["validation"]["label"])
        if best is None or v > best[0]:
            p = bow.predict(b.transform(task["test"]["text"]), W, c)
            best = (v, bow.accuracy(p, task["test"]["label"]), bow.macro_f1(p, task["test"]["label"], n_classes), wd)
    return dict(test_acc=best[1], test_f1=best[2], val_acc=best[0], wd=best[3])


if __name__ == "__main__":
    part = sys.argv[1]
    seeds = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0, 1]
    task = tasks.load_word_order_task() if part.startswith("order") else tasks.load_isco_task()
    ntrain = len(task["train"])
    counts = [int(c) for c in sys.argv[4].split(",")] if len(sys.argv) > 4 else ([25, 100, 400, ntrain] if part.startswith("order") else [25, 50, 100, ntrain])
    t0 = time.time()
    B = bodies()
    ALL = {"scratch": dict(body="scratch"), "shakespeare": dict(body="shakespeare"),
            "stage2": dict(body="shakespeare+task-lm"), "ulmfit": dict(body="shakespeare+task-lm", ulm=True),
            "task-lm": dict(body="task-lm"), "encoder": dict(body="encoder"),
            "probe-stage2": dict(body="shakespeare+task-lm", trainable="head"),
            "probe-scratch": dict(body="scratch", trainable="head"), "probe-enc": dict(body="encoder", trainable="head")}
    arms = {k: ALL[k] for k in sys.argv[5].split(",")} if len(sys.argv) > 5 else ALL
    with open(OUT, "a") as f:
        for n in counts:
            for seed in seeds:
                r = bow_run(task, n, seed)
                f.write(json.dumps(dict(arm="bow", n=n, seed=seed, **r)) + "\n")
                f.flush()
                for arm, a in arms.items():
                    best = None
                    for lr in (1e-4, 3e-4, 1e-3) if a.get("trainable") != "head" else (1e-2, 3e-2, 1e-1):
                        r = run(B[a["body"]], task, n, seed, lr, trainable=a.get("trainable", "all"), ulm=a.get("ulm", False))
                        if best is None or r["val"] < best["val"]:
                            best = dict(r, lr=lr)
                    f.write(json.dumps(dict(arm=arm, n=n, seed=seed, **best)) + "\n")
                    f.flush()
                print(n, seed, round(time.time() - t0), flush=True)
