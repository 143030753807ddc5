"""Stage 4, the report: from per-cell records to the verdict and the pages a person reads.

Owns: the decision rule's statistics (`statistics`) and its form for seeds in rounds (`sequential`), results tables
and the verdict (`aggregate`), which cells the next round trains (`rounds`), the recommended configuration
(`recommend`), curve diagnoses and broken variants (`diagnose`), gate findings tied to effects (`explain`), every
chart (`plots`) and thumbnail (`thumbnails`), what each section of the HTML report shows (`page`, `gate_section`,
`comparison`) and the Jinja2 templates that say how it looks (`templates/`, rendered with autoescaping by `render`),
the same verdict as markdown for Prefect's UI (`markdown`), run folders with their summary and the index of runs
(`runs`), and what a run ran on (`run_facts`).

May import every earlier stage: `tasks.data`, `tasks.gate`, `tasks.training`, and the shared `tasks.errors`,
`tasks.paths`, `tasks.files`.
"""
