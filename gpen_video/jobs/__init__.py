"""Batch jobs: many files, resumable after a crash, segmented for long inputs, on this machine or on Ray.

``gpen-video batch`` (``batch_cli``) expands its inputs (``inputs``), plans each file as key-frame
segments (``planner``), runs the unfinished ones on an engine (``engine_local``, ``engine_ray``; tasks in
``tasks``), records each finished segment atomically (``manifest``), joins the segments and remuxes the
other streams once (``assemble``), and reports every file (``summary``); ``runner.BatchJob`` drives it.
Nothing is imported here, so building the CLI's parser stays cheap.
"""
