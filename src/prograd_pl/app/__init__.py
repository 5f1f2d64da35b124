"""One run, split by job: config resolution and the recipe (``config``), run identity (``identity``), checkpoint
I/O (``checkpoint``), building components (``components``), evaluation (``evaluate``) and orchestration (``run``)."""
