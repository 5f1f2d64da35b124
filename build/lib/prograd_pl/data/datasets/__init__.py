"""One reader module per dataset: ``read(dataset_dir) -> DatasetSplits`` plus its layout constants.

Nothing is registered on import; ``prograd_pl.data.registry.DATASETS`` lists the datasets.
"""
