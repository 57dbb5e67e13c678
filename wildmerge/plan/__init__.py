"""The cost plan of a study (issue 25), at DAG time: jobs, downloads, disk, SVDs, forward tokens
and GPU-hours, from the same :class:`~wildmerge.study.plan.Study` the Snakefile builds; no job is
run and no weight is downloaded. ``python -m wildmerge.plan --configfile config/paper.yaml``.

* :mod:`~wildmerge.plan.counts`: jobs per base and rule, checkpoint layouts and bytes, SVDs;
* :mod:`~wildmerge.plan.tokens`: evaluation forward tokens per model and benchmark;
* :mod:`~wildmerge.plan.throughput`: the machine model per GPU kind (every constant printed);
* :mod:`~wildmerge.plan.calibrate`: efficiencies fitted from the jobs already run;
* :mod:`~wildmerge.plan.report`: the plan itself (per job, per base and rule), and the
  planned SLURM runtimes of the evaluation rules.
"""
