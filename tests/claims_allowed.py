"""Sentences that use a comparison word without claiming a result this spot must assert (see ``tests/claims.py``):
per notebook, a fragment of the sentence and why. A summary line that repeats a result names where it is asserted.
"""

SUMMARY = "summary: repeats a result asserted in the section it names"
GOAL = "learning goal: says what the learner will do, not what was measured"
DEFINITION = "definition or method, not a measured result"
OTHER = "a result of another notebook, asserted there"

ALLOWED: dict[str, list[tuple[str, str]]] = {
    "01": [
        ("for a larger vocabulary and more training steps", "describes the presets"),
        ("A product of thousands of numbers below 1 underflows", DEFINITION),
        ("the **uniform baseline** that every model must beat", DEFINITION),
        ("A bigram table trained with this loss ends well below both", SUMMARY + " (section 4's asserts)"),
    ],
    "02": [
        ("measure how far it gets below the unigram baseline", GOAL),
    ],
    "03": [
        ("**how much target data does pretraining save?**", "the question the notebook asks"),
        ("how much more target data scratch needs to match", GOAL),
    ],
    "04": [
        ("Notebook 03 found that pretraining saves target data", OTHER + " (03's claims cell)"),
        ("with a control that spends the same extra compute on more", GOAL),
        ("**Domain-adaptive pretraining works.**", SUMMARY + " (section 4)"),
        ("**The tokenizer is part of the source.**", SUMMARY + " (section 5)"),
    ],
    "05": [
        ("against the losses of models that know far less", GOAL),
    ],
    "06": [
        ("by at least 15% at the reference learning rate (asserted there)", OTHER + " (05, section 2)"),
        ("The gradient above scores the *observed* next tokens", DEFINITION),
        ("on more windows and normalised to mean 1", DEFINITION),
        ("above 1, each weight of the group matters more than average", "how to read the table's column"),
        ("the baseline EWC must beat", DEFINITION),
        ("(left is better) and the source loss it kept (down is better)", "how to read the plot"),
        ("the simplest cure of all is to fine-tune less", "what the dashed line is"),
        ("**The article's claim 6, tested for EWC.**", SUMMARY + " (section 4, claims 1 and 2)"),
        ("Against a plain L2 pull to the old weights at the same target loss", SUMMARY + " (section 4, claim 3)"),
        ("A method that forgets less by learning less is no cure", "the principle the plot is read by"),
    ],
    "08": [
        ("A practitioner adapting a model has more options than those", "introduces the methods"),
        ("LoRA Learns Less and Forgets Less", "a paper's title"),
        ("lower layers learn more slowly", DEFINITION),
    ],
    "10": [
        ("here, how many times more labels", DEFINITION + " (the label multiple)"),
        ("On occupation coding it beat every small transformer", SUMMARY + " (section 7)"),
        ("The stages 1+2 body beat scratch from 100 labels", SUMMARY + " (sections 6 and 7)"),
        ("learned less of it than the Shakespeare GPT", SUMMARY + " (section 8)"),
    ],
}
