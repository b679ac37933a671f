"""Jobs: analyses run in the background, their records and reports in the database (``api.store.jobs``).

``api.jobs.service.Jobs`` accepts them (POST /v1/jobs), runs them (``job_runners`` runners per server process,
claiming queued jobs from the database, so that any replica may run any job), reports their progress and
cancels them; ``api.jobs.executor`` is where the work itself runs: the local compute pool, or a cluster.
"""
