# mmvit_ext's training guards, inherited by every config of the project (docs: "What is refused
# and why"). GuardedRunner refuses checkpoints that do not fit or hold NaN/Inf, finds the newest
# intact checkpoint for --resume, writes checkpoints atomically, locks the work dir, and puts
# the guarded form in place of each plain component it finds (train loop, optimizer wrapper,
# checkpoint hook, COCO dataset). Switch one guard off in one line, e.g.
#   guards = dict(work_dir_lock=False)     (or --cfg-options guards.work_dir_lock=False)
# and all of them with runner_type = 'Runner'.
runner_type = 'GuardedRunner'
guards = dict(
    checkpoint_fit=True,  # a checkpoint that does not fit, or holds NaN/Inf, is refused
    resume_search=True,  # --resume takes the newest intact checkpoint
    finite_state=True,  # nothing non-finite is saved
    atomic_save=True,  # checkpoints written whole or not at all
    work_dir_lock=True,  # one training run per work dir
    resume_position=True,  # GuardedEpoch/IterBasedTrainLoop: resume inside an epoch exactly
    finite_steps=True,  # FiniteOptimWrapper: stop before a NaN/Inf step
    safe_checkpoints=True,  # SafeCheckpointHook: save first, delete old checkpoints after
    checked_coco=True)  # CheckedCocoDataset: annotation problems named before training
