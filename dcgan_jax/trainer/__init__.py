"""The training loop and what it drives: the loop in stages (`loop`), schedules, checkpoints, the workdir's lock and
record, the monitor (evaluation, best checkpoint, summary pictures) and best-effort writes."""
