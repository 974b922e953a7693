"""Everything specific to J. Ju's thesis, apart from the reusable library.

- `paper`: the published numbers of Tables 1-5 and their layouts;
- `rows`: which training (labels, corruption, loss) feeds which row of which
  table or figure (Tables 1-5, Figs. 3-7);
- `claims`: the thesis' claims and the rule that judges each against our cells.
"""
