"""Training images: IDX files, TFDS, image folders (in memory or streamed), the bundled MNIST test digits, and
deterministic batching (`input_pipeline`, `image_folder`, `bundled`)."""
