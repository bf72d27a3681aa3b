"""The writers: everything a person reads, made from a results dict and nothing else.

- `txt`     benchmark_report.txt (and `why`, the one-line reason behind a score)
- `html`    benchmark_report.html, from `templates/report.html.j2` + `report.css` + `report.js`
- `charts`  benchmark_charts.png (matplotlib)
- `flips`   flips.csv
- `console` what benchmark.py prints at the end
- `messages` the French/English words of all of them (`--lang`)

Writers read the results (metadata, results, statistics); they never compute a statistic or a verdict
(that is `analysis`/`verdict`) and never import a backend module (a backend's report header comes
through `backends.backend_class(name).where_it_ran`).
"""

#: Characters of one answer shown in the HTML page and in flips.csv; the rest is counted ("… N more
#: characters") and kept whole in benchmark_results.json. A model that loops, or a server that ignores
#: max_tokens, returns megabytes: every writer stays linear in what it is given and bounded in what it shows.
ANSWER_CHARS = 4000

