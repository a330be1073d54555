"""The paper's comparison as one resumable grid: datasets x backbones x regimes x methods x
seeds, read from a YAML file (reports/bench/grid.yaml), one row per finished cell in
reports/bench/results.csv, and reports/bench/README.md with the tables in the article's layout
and the plots. Two reference rows per setting: `original` (the base model, before the deletion)
and `popularity` (the retained items' training counts, the same ranking for every user: what a
recommender that knows nothing about a user gives it, so where an erased user's forget Recall@20
lands without data).

- spec: the grid file's schema, its cells, the results' columns and store, what is left to run
- run: preparing datasets and base models, one cell in a child process, the whole grid
- report: the summary over seeds and README.md
- claims: the article's claim judged per setting (TRU against the other approximate methods)
- plots: retain against forget, and time as a share of Retrain's
"""
