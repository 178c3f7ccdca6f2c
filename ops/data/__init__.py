"""The data pipeline: list records, samplers, frame sources, transforms, the dataset and its loaders."""
