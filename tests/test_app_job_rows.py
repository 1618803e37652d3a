"""The Fine-tuning tab's job list says what each job runs: a training run's role, or the defense it applies."""

from app.lab import JobView
from app.lab_ui import jobs_rows, progress_markdown
from backdoor.jobs import DEFENSE, Job


def test_a_defense_job_is_listed_by_its_defense_and_a_training_job_by_its_role():
    training = Job("a1", "bd-text", {"kind": "backdoor"})
    defense = Job("a2", "retune-bd-text", {"defense": "retune", "adapter": "checkpoints/backdoor-text"}, kind=DEFENSE)
    rows = jobs_rows([JobView(training, {}, ""), JobView(defense, {}, "")])
    assert rows[0][2] == "backdoor"
    assert rows[1][2] == "defense: retune"
    assert "(defense: retune)" in progress_markdown(JobView(defense, {}, ""))
