"""Paper-style result tables built from run records alone (analogues of SLIM paper Tables 2-5, 7, 8).

The modules: :mod:`.cells` (styles, numbers, rendering), :mod:`.selection` (which runs fill which row and
cell), :mod:`.captions` (the shared phrases and footers), :mod:`.paper` (Tables 2, 3 and 5, every method),
:mod:`.budgeted` (Tables 4, 7, 8 and the stage diagnostics, the methods that curate on an attention budget)
and :mod:`.index` (every table into files, with an index).

Conventions (stated again in every table's caption):

- Accuracies are percentages with one decimal, AIoU scores are written ``.xx``.
- A cell is "mean ± std" over the seeds of its runs, with the population std (``ddof=0``, as numpy's
  default and most papers' tables); a cell backed by one seed shows the mean alone.
- When one cell holds several ok runs with the same seed (a rerun), only the newest (by ``created``) counts.
- Accuracy tables use the ``test`` split; ImageNet-9 uses ``test_mixed_rand`` when its records have it.
  Waterbirds' "Avg" is ``weighted_avg_acc`` (test group accuracies weighted by train group proportions)
  when its records have it, else the plain average.
- Best is bold and second best underlined per column (within each method for Tables 7 and 8), ranked by
  the mean as displayed, so values that look equal tie (ties are all bold).
- SLIM rows of Tables 2, 3 and 5 use only runs at ``default_hparams``' budget and subset fraction; Table 7
  varies the budget with the subset fraction at its default, Table 8 the reverse.
- Missing cells show as "–" (never 0); a table with no value at all is skipped; failed runs are left out
  of the numbers and listed in a footer line.
- The runs of one cell must come from one code version (``code_version``, harness.core.versions; records made
  before it existed count as one unknown version): :func:`.index.write_tables` refuses a cell that mixes versions
  unless ``allow_mixed``, and then lists such cells in the index.
- Runs whose attention answers came from people (``details.oracle.kind`` "human") are rows of their own,
  marked ‡ and explained in a footer line.
"""
