"""The order in which ``make test`` hands its files to pytest-xdist's workers (the repository's ``conftest.py``)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("make_test_schedule", ROOT / "conftest.py")
schedule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(schedule)


def test_notebooks_go_first_the_pretraining_one_then_the_longest(tmp_path):
    times = tmp_path / "times.csv"
    times.write_text("notebook,preset,seconds\n"
                     "03-fine-tuning,quick,300\n10-transfer,quick,100\n10-transfer,quick,500\n"  # the last row counts
                     "01-loss,quick,20\n01-loss,cpu,9000\n", encoding="utf-8")
    seconds = schedule.notebook_seconds(times)
    assert seconds == {"03-fine-tuning": 300.0, "10-transfer": 500.0, "01-loss": 20.0}
    scopes = ["tests/test_many.py", "notebooks/01-loss::ipynb", "tests/test_few.py", "notebooks/03-fine-tuning::ipynb",
              f"notebooks/{schedule.FIRST}::ipynb", "notebooks/10-transfer.ipynb", "notebooks/11-new::ipynb"]
    ordered = sorted(scopes, key=lambda s: schedule.scope_rank(s, seconds))
    assert ordered == [f"notebooks/{schedule.FIRST}::ipynb", "notebooks/10-transfer.ipynb",
                       "notebooks/03-fine-tuning::ipynb", "notebooks/01-loss::ipynb",
                       "notebooks/11-new::ipynb",  # not measured yet: after the measured ones
                       "tests/test_many.py", "tests/test_few.py"]  # unit tests keep xdist's order, at the end


def test_a_missing_or_unreadable_times_file_leaves_the_order_alone(tmp_path):
    assert schedule.notebook_seconds(tmp_path / "absent.csv") == {}
    bad = tmp_path / "bad.csv"
    bad.write_text("notebook,preset,seconds\n01-loss,quick,soon\n", encoding="utf-8")
    assert schedule.notebook_seconds(bad) == {}


def test_the_first_notebook_and_the_times_file_exist():
    assert (ROOT / "notebooks" / f"{schedule.FIRST}.ipynb").exists()
    seconds = schedule.notebook_seconds()
    assert {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")} <= set(seconds)
