"""The synthetic OpenEDS 2020 generator: eye scenes rendered to the dataset's exact layout.

`python -m dataset.synthetic --out DIR` (or `python dataset/synthetic --out DIR`) runs its CLI.
"""
