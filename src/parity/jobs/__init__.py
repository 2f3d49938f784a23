"""Jobs: training jobs and batch predictions, run as durable records by a runner with a
concurrency cap (see docs/lifecycle.md). Entry point: `store.jobs`."""
