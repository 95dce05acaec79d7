"""Data: the DIS-5K layout, SAM coarse-mask preparation, GT enrichment and the training dataset.

Submodules are imported on use (``dissam.data.layout``, ``.enrich``, ``.prepare``, ``.dataset``,
``.synthetic``) so that ``import dissam.data`` stays cheap.
"""
